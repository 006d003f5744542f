//! /openapi.json, generated: every route's handler carries its `#[utoipa::path]` (request
//! type, parameters, responses, scope), and every request and response type its `ToSchema`.
//! What the layers around the handlers add is filled in here, once, from the same tables the
//! server answers with:
//! - the refusals of the key check and the door (401, 403, 429; 413 and 415 for bodies; 400
//!   for a body that does not parse) on every operation that has them;
//! - `Retry-After` on every 429 and 503;
//! - the error table ([`ErrorCode`]) as the `code` enum of the error body and as
//!   `x-error-codes` (each code's status, retry and meaning).

use hearth_types::{ErrorCode, Retry};
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use crate::{anthropic, openai, recs, rerank, responses, shopping, support, usage};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hearth",
        description = "Self-hosted models behind the APIs your code already speaks, \
            recommendations and a shopping assistant trained on your events, and a support \
            agent. Send `Authorization: Bearer <key>` (or `x-api-key: <key>`) when the server \
            has API keys (every route \
            but /health, /ready and /openapi.json); a key calls only the routes of its scopes \
            (each operation's `security` names the one it needs; `admin` opens all)."
    ),
    paths(
        openai::chat_completions,
        openai::completions,
        openai::embeddings,
        rerank::rerank,
        rerank::tei_rerank,
        rerank::score,
        openai::list_models,
        openai::get_model,
        responses::create,
        responses::get,
        responses::delete,
        anthropic::messages,
        anthropic::count_tokens,
        crate::health,
        crate::ready,
        crate::metrics_route,
        crate::openapi,
        recs::for_user,
        recs::similar,
        recs::for_session,
        shopping::search,
        shopping::assistant,
        recs::upsert_items,
        recs::delete_items,
        recs::get_item,
        recs::upsert_users,
        recs::delete_users,
        recs::get_user,
        recs::insert_events,
        support::create_session,
        support::get_session,
        support::post_message,
        usage::report,
    ),
    components(schemas(
        hearth_types::OpenAiErrorBody,
        hearth_types::StreamError,
        hearth_types::anthropic::ErrorResponse
    )),
    modifiers(&Bearer),
    tags(
        (name = "inference", description = "OpenAI-compatible chat, completions, embeddings, models; Responses, Anthropic Messages, rerank and score"),
        (name = "recommendations", description = "Recommendations, search and the shopping assistant"),
        (name = "catalogue", description = "Items, users and events the recommendations learn from"),
        (name = "support", description = "Customer-service conversations"),
        (name = "usage", description = "Spend, tokens and savings from the ledger"),
        (name = "operations", description = "Health, metrics, this document"),
    )
)]
struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

const ERROR_REF: &str = "#/components/schemas/Error";
/// The error body of the Messages API's paths (Anthropic's shape).
const ANTHROPIC_ERROR_REF: &str = "#/components/schemas/AnthropicError";

/// The refusals every protected operation may answer with, before its handler runs.
const KEY_REFUSALS: [(&str, &str); 3] = [
    ("401", "No API key, or one that is unknown or revoked"),
    (
        "403",
        "The key lacks the scope or route this needs, or the Host or Origin is not allowed",
    ),
    (
        "429",
        "Over the key's rate, concurrency or budget limit (Retry-After)",
    ),
];

/// The refusals of a request body, before its handler runs.
const BODY_REFUSALS: [(&str, &str); 3] = [
    ("400", "Invalid body; `error.param` names the field"),
    ("413", "Body larger than `[server] max_body_bytes`"),
    (
        "415",
        "The body is not sent as JSON (Content-Type: application/json)",
    ),
];

/// The whole document, as a server whose price table is `prices` serves it at /openapi.json
/// (the models savings can be measured against differ between servers).
pub fn spec(prices: &hearth_gateway::prices::PriceTable) -> Value {
    let mut spec = serde_json::to_value(ApiDoc::openapi()).expect("the API description serializes");
    let paths = spec["paths"]
        .as_object_mut()
        .expect("the document has paths");
    for (path, operations) in paths.iter_mut() {
        let error = if path.starts_with("/v1/messages") {
            ANTHROPIC_ERROR_REF
        } else {
            ERROR_REF
        };
        // The Messages and Responses APIs stream named events, without `[DONE]`.
        let named = path.starts_with("/v1/messages") || path.starts_with("/v1/responses");
        for operation in operations
            .as_object_mut()
            .expect("a path holds operations")
            .values_mut()
        {
            complete(operation, error, named);
        }
    }
    let codes: Vec<Value> = ErrorCode::ALL
        .iter()
        .map(|c| json!(c.as_str()))
        .chain([Value::Null])
        .collect();
    for body in ["Error", "StreamError"] {
        spec["components"]["schemas"][body]["properties"]["error"]["properties"]["code"] = json!({
            "description": "The error's code: a row of `x-error-codes`",
            "enum": codes,
        });
    }
    let table: Map<String, Value> = ErrorCode::ALL
        .iter()
        .map(|c| {
            let retry = match c.retry() {
                None => Value::Null,
                Some(Retry::After(s)) => json!(s),
                Some(Retry::AsSent) => json!("retry-after"),
            };
            (
                c.as_str().to_owned(),
                json!({"status": c.status(), "retry": retry, "meaning": c.meaning()}),
            )
        })
        .collect();
    spec["x-error-codes"] = Value::Object(table);
    let references: Vec<&str> = prices.names().collect();
    let usage = spec["paths"]["/v1/usage"]["get"]["parameters"]
        .as_array_mut()
        .expect("/v1/usage has parameters");
    for parameter in usage {
        if parameter["name"] == "reference" {
            parameter["schema"] = json!({"type": "string", "enum": references});
        }
    }
    spec
}

/// A stream of server-sent events whose data are JSON `payload`s: the schema describes one
/// event (as OpenAPI 3.1 readers take the schema of `text/event-stream`; 3.2 calls it
/// `itemSchema`), its `data` a JSON payload, an error (then the stream ends), or the closing
/// `[DONE]`.
fn server_sent_events(payload: &Value) -> Value {
    json!({"schema": {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "string",
                "anyOf": [
                    {"const": "[DONE]", "description": "The last event of every stream"},
                    {
                        "contentMediaType": "application/json",
                        "contentSchema": {"oneOf": [
                            payload,
                            {"$ref": "#/components/schemas/StreamError"},
                        ]},
                    },
                ],
            },
            "event": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    }})
}

/// The Messages API's stream: each event named (`event:`) by the `type` of its JSON data,
/// an `error` event ending it on a failure; no `[DONE]`.
fn named_events(payload: &Value) -> Value {
    json!({"schema": {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "description": "The data's `type`"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": payload,
            },
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    }})
}

/// Adds to one operation what the layers around its handler answer; `error`: its error
/// body's schema; `named`: its stream's events are named.
fn complete(operation: &mut Value, error: &str, named: bool) {
    // A summary is one line (utoipa keeps the doc comment's line breaks).
    if let Some(summary) = operation.get("summary").and_then(Value::as_str) {
        operation["summary"] = json!(summary.replace('\n', " "));
    }
    let protected = operation
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    let has_body = operation.get("requestBody").is_some();
    if !protected {
        // Public: no key is asked for.
        operation["security"] = json!([]);
    }
    let responses = operation["responses"]
        .as_object_mut()
        .expect("an operation has responses");
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| json!({ "description": description }));
    };
    if protected {
        for (status, description) in KEY_REFUSALS {
            add(status, description);
        }
    }
    if has_body {
        for (status, description) in BODY_REFUSALS {
            add(status, description);
        }
    }
    for (status, response) in responses.iter_mut() {
        if let Some(stream) = response.pointer_mut("/content/text~1event-stream") {
            *stream = if named {
                named_events(&stream["schema"])
            } else {
                server_sent_events(&stream["schema"])
            };
        }
        if !status.starts_with(['4', '5']) {
            continue;
        }
        response
            .as_object_mut()
            .expect("a response is an object")
            .entry("content")
            .or_insert_with(|| json!({"application/json": {"schema": {"$ref": error}}}));
        if status == "429" || status == "503" {
            response["headers"] = json!({"Retry-After": {
                "description": "Seconds to wait before retrying",
                "schema": {"type": "integer", "minimum": 0},
            }});
        }
    }
    let mut sorted: Vec<(String, Value)> = std::mem::take(responses).into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    responses.extend(sorted);
}

#[cfg(test)]
mod tests {
    use hearth_core::recs_service::{
        MAX_ASSISTANT_CANDIDATES, MAX_BATCH, MAX_N, MAX_SESSION_EVENTS,
    };
    use hearth_infer::llm::{FloatRange, FLOAT_RANGES};
    use serde_json::Value;

    fn number(value: &Value, what: &str) -> f64 {
        value
            .as_f64()
            .unwrap_or_else(|| panic!("{what}: no number in the document"))
    }

    /// utoipa takes only literal numbers in its attributes: the bounds written there are the
    /// ones the server enforces.
    #[test]
    fn the_documents_bounds_are_the_servers() {
        let spec: Value = serde_json::from_str(&crate::openapi_spec()).unwrap();
        let schemas = &spec["components"]["schemas"];
        let n = spec["paths"]["/v1/recommendations/{user_id}"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "n")
            .unwrap()["schema"]["maximum"]
            .clone();
        for (what, bound, limit) in [
            ("query n", &n, MAX_N),
            (
                "SessionRequest.n",
                &schemas["SessionRequest"]["properties"]["n"]["maximum"],
                MAX_N,
            ),
            (
                "SearchRequest.n",
                &schemas["SearchRequest"]["properties"]["n"]["maximum"],
                MAX_N,
            ),
            (
                "AssistantRequest.candidates",
                &schemas["AssistantRequest"]["properties"]["candidates"]["maximum"],
                MAX_ASSISTANT_CANDIDATES,
            ),
            (
                "SessionRequest.events",
                &schemas["SessionRequest"]["properties"]["events"]["maxItems"],
                MAX_SESSION_EVENTS,
            ),
            (
                "ItemsBody.items",
                &schemas["ItemsBody"]["properties"]["items"]["maxItems"],
                MAX_BATCH,
            ),
            (
                "UsersBody.users",
                &schemas["UsersBody"]["properties"]["users"]["maxItems"],
                MAX_BATCH,
            ),
            (
                "IdsBody.ids",
                &schemas["IdsBody"]["properties"]["ids"]["maxItems"],
                MAX_BATCH,
            ),
            (
                "EventsBody.events",
                &schemas["EventsBody"]["properties"]["events"]["maxItems"],
                MAX_BATCH,
            ),
        ] {
            assert_eq!(number(bound, what), limit as f64, "{what}");
        }
        for (name, range) in FLOAT_RANGES {
            let field = &schemas["SamplingFields"]["properties"][name];
            let (low_key, low, high) = match range {
                FloatRange::Closed(low, high) => ("minimum", low, high),
                FloatRange::OpenBelow(low, high) => ("exclusiveMinimum", low, high),
            };
            assert_eq!(number(&field[low_key], name), low, "{name}");
            assert_eq!(number(&field["maximum"], name), high, "{name}");
        }
    }
}
