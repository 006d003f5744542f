//! The console's API through `router()`: sign-in, roles, CSRF, the sign-in limit, the
//! support inbox on a real handed-over conversation (the real SmolLM2 registered as the
//! agent's model), private notes, keys made in the console, and the spend view.

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use hearth_core::console::Role;
use hearth_core::{Config, Platform, StoreUrl};
use hearth_testdata::shared_data_dir;
use serde_json::{json, Value};

use crate::common;

fn platform(dir: &std::path::Path) -> Platform {
    let mut config = Config {
        data_dir: dir.to_owned(),
        ..Default::default()
    };
    config.store.url = hearth_testdata::test_store_url(dir).map(StoreUrl::new);
    config.support.policy = Some(shared_data_dir().join("retail/policy.md"));
    config.console.login_failures_per_account = 3;
    let platform = Platform::open(config).unwrap();
    common::register_test_models(&platform);
    let accounts = platform.accounts().unwrap();
    for (name, role) in [
        ("ana", Role::Admin),
        ("sam", Role::Support),
        ("tom", Role::Support),
        ("vic", Role::Viewer),
    ] {
        accounts.create(name, role, "correct horse").unwrap();
    }
    platform
}

/// A signed-in browser: its cookie and CSRF token.
#[derive(Clone)]
pub(crate) struct Browser {
    cookie: String,
    csrf: String,
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
    pub(crate) raw: String,
}

async fn send(
    platform: &Platform,
    method: &str,
    uri: &str,
    who: Option<&Browser>,
    csrf: Option<&str>,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(b) = who {
        request = request.header(header::COOKIE, format!("other=1; {}", b.cookie));
    }
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let (status, headers, bytes) = common::call(platform, request).await;
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
    }
}

/// GET as `who`.
pub(crate) async fn get(platform: &Platform, uri: &str, who: &Browser) -> Answer {
    send(platform, "GET", uri, Some(who), None, None, &[]).await
}

/// POST as `who`, with its CSRF token.
async fn post(platform: &Platform, uri: &str, who: &Browser, body: Value) -> Answer {
    send(
        platform,
        "POST",
        uri,
        Some(who),
        Some(&who.csrf),
        Some(body),
        &[],
    )
    .await
}

/// A sign-in attempt from a browser without a session.
async fn login(platform: &Platform, name: &str, password: &str, extra: &[(&str, &str)]) -> Answer {
    send(
        platform,
        "POST",
        "/console/api/login",
        None,
        None,
        Some(json!({"name": name, "password": password})),
        extra,
    )
    .await
}

/// A call to the public API with an API key.
async fn keyed(
    platform: &Platform,
    method: &str,
    uri: &str,
    bearer: &str,
    body: Option<Value>,
) -> Answer {
    send(
        platform,
        method,
        uri,
        None,
        None,
        body,
        &[("authorization", bearer)],
    )
    .await
}

/// Signs `name` in with the password the tests give every account, `correct horse`.
pub(crate) async fn sign_in(platform: &Platform, name: &str) -> Browser {
    let answer = login(platform, name, "correct horse", &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.raw);
    let set = answer.headers[header::SET_COOKIE].to_str().unwrap();
    let cookie = set.split(';').next().unwrap().to_owned();
    Browser {
        cookie,
        csrf: answer.body["csrf"].as_str().unwrap().to_owned(),
    }
}

async fn customer(platform: &Platform, uri: &str, body: Value) -> Value {
    let answer = send(platform, "POST", uri, None, None, Some(body), &[]).await;
    assert!(answer.status.is_success(), "{uri}: {}", answer.raw);
    answer.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_roles_csrf_and_the_support_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(dir.path());

    // The page itself is served with a policy that runs only its own script.
    let page = send(&platform, "GET", "/console", None, None, None, &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(page.raw.contains("/console/app.js"));
    let script = send(&platform, "GET", "/console/app.js", None, None, None, &[]).await;
    assert!(
        !script.raw.contains("innerHTML"),
        "the page builds nodes, never HTML"
    );

    // Not signed in: every API route is a 401, and a wrong password says nothing more.
    let anonymous = send(&platform, "GET", "/console/api/me", None, None, None, &[]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.body["error"]["code"], "not_signed_in");
    let wrong = login(&platform, "sam", "not it at all", &[]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["error"]["code"], "invalid_credentials");
    assert!(!wrong.headers.contains_key(header::SET_COOKIE));

    // The cookie: HttpOnly, SameSite=Strict, scoped to the console; Secure behind HTTPS.
    let signed = login(&platform, "sam", "correct horse", &[]).await;
    let set = signed.headers[header::SET_COOKIE].to_str().unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Secure"), "{set}");
    assert_eq!(signed.body["role"], "support");
    let proxied = login(
        &platform,
        "sam",
        "correct horse",
        &[("x-forwarded-proto", "https")],
    )
    .await;
    assert!(proxied.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("; Secure"));
    let sam = sign_in(&platform, "sam").await;
    let tom = sign_in(&platform, "tom").await;
    let vic = sign_in(&platform, "vic").await;
    let me = get(&platform, "/console/api/me", &sam).await;
    assert_eq!(me.body["name"], "sam");

    // A customer asks for a person, with markup in the message.
    let hostile = "I want a human <script>alert(1)</script><img src=x onerror=alert(2)>";
    let session = customer(&platform, "/v1/support/sessions", Value::Null).await;
    let id = session["id"].as_str().unwrap().to_owned();
    let turn = customer(
        &platform,
        &format!("/v1/support/sessions/{id}/messages"),
        json!({"content": hostile, "stream": false}),
    )
    .await;
    assert_eq!(turn["status"], "handoff", "{turn}");

    let waiting = get(&platform, "/console/api/inbox?view=waiting", &sam).await;
    assert_eq!(waiting.status, StatusCode::OK, "{}", waiting.raw);
    let listed = &waiting.body["conversations"][0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["status"], "handoff");
    assert!(listed["assignee"].is_null());
    assert!(listed["handoff_summary"]
        .as_str()
        .unwrap()
        .contains("asked for a person"));
    let bad_view = get(&platform, "/console/api/inbox?view=everything", &sam).await;
    assert_eq!(bad_view.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_view.body["error"]["param"], "view");

    // A change without the CSRF token, or with another session's, is refused and changes
    // nothing.
    let reply_uri = format!("/console/api/conversations/{id}/reply");
    let body = json!({"text": "Hello, this is Sam."});
    let no_token = send(
        &platform,
        "POST",
        &reply_uri,
        Some(&sam),
        None,
        Some(body.clone()),
        &[],
    )
    .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert_eq!(no_token.body["error"]["code"], "csrf_rejected");
    let crossed = send(
        &platform,
        "POST",
        &reply_uri,
        Some(&sam),
        Some(&tom.csrf),
        Some(body.clone()),
        &[],
    )
    .await;
    assert_eq!(crossed.status, StatusCode::FORBIDDEN);
    let view = get(&platform, &format!("/console/api/conversations/{id}"), &sam).await;
    let kinds: Vec<&str> = view.body["session"]["conversation"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["customer", "handoff", "agent"], "{}", view.raw);

    // The viewer is refused by the server, whatever the page shows.
    for (uri, body) in [
        (reply_uri.as_str(), json!({"text": "x"})),
        ("/console/api/keys", json!({"name": "viewer-key"})),
    ] {
        let refused = post(&platform, uri, &vic, body).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{uri}: {}",
            refused.raw
        );
        assert_eq!(refused.body["error"]["code"], "role_forbidden");
    }
    let refused = get(&platform, "/console/api/inbox", &vic).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // Sam replies: the reply is Sam's (the cookie says who), and the conversation is Sam's.
    let replied = post(&platform, &reply_uri, &sam, body).await;
    assert_eq!(replied.status, StatusCode::OK, "{}", replied.raw);
    assert_eq!(replied.body["assignee"], "sam");
    let note = "Private: refund approved by the team lead";
    let noted = post(
        &platform,
        &format!("/console/api/conversations/{id}/notes"),
        &sam,
        json!({"text": note}),
    )
    .await;
    assert_eq!(noted.body["notes"][0]["author"], "sam", "{}", noted.raw);
    assert_eq!(noted.body["notes"][0]["text"], note);
    let empty = post(
        &platform,
        &format!("/console/api/conversations/{id}/notes"),
        &sam,
        json!({"text": "  "}),
    )
    .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert_eq!(empty.body["error"]["param"], "text");
    let huge = post(
        &platform,
        &format!("/console/api/conversations/{id}/notes"),
        &sam,
        json!({"text": "x".repeat(64 * 1024)}),
    )
    .await;
    assert_eq!(huge.status, StatusCode::BAD_REQUEST, "{}", huge.raw);
    assert_eq!(huge.body["error"]["param"], "text");

    // The customer's API shows the human reply and never the note.
    let seen = send(
        &platform,
        "GET",
        &format!("/v1/support/sessions/{id}"),
        None,
        None,
        None,
        &[],
    )
    .await;
    let entries = seen.body["conversation"]["entries"].as_array().unwrap();
    let last = entries.last().unwrap();
    assert_eq!(last["kind"], "human");
    assert_eq!(last["text"], "Hello, this is Sam.");
    assert_eq!(last["author"], "sam");
    assert!(!seen.raw.contains("refund approved"), "{}", seen.raw);
    // The customer's text comes back as the same text (the page renders it as text).
    assert_eq!(entries[0]["text"], hostile);

    // Tom's reply is Tom's, though Sam holds the conversation.
    let toms = post(
        &platform,
        &reply_uri,
        &tom,
        json!({"text": "Tom here too."}),
    )
    .await;
    let entries = toms.body["session"]["conversation"]["entries"]
        .as_array()
        .unwrap();
    assert_eq!(entries.last().unwrap()["author"], "tom");
    assert_eq!(toms.body["assignee"], "sam");

    // Assigning: only to people who answer customers.
    let assign_uri = format!("/console/api/conversations/{id}/assign");
    let to_viewer = post(&platform, &assign_uri, &sam, json!({"to": "vic"})).await;
    assert_eq!(to_viewer.status, StatusCode::BAD_REQUEST);
    assert_eq!(to_viewer.body["error"]["param"], "to");
    let to_tom = post(&platform, &assign_uri, &sam, json!({"to": "tom"})).await;
    assert_eq!(to_tom.body["assignee"], "tom", "{}", to_tom.raw);
    let toms_inbox = get(&platform, "/console/api/inbox?view=mine", &tom).await;
    assert_eq!(toms_inbox.body["conversations"][0]["id"], id.as_str());
    let sams_inbox = get(&platform, "/console/api/inbox?view=mine", &sam).await;
    assert_eq!(sams_inbox.body["conversations"], json!([]));

    // Hand back: the agent has it again, and a human reply is refused.
    let back = post(
        &platform,
        &format!("/console/api/conversations/{id}/hand-back"),
        &tom,
        json!({}),
    )
    .await;
    assert_eq!(back.body["session"]["status"], "active", "{}", back.raw);
    let late = post(&platform, &reply_uri, &tom, json!({"text": "still there?"})).await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    // Handed over again, then resolved; resolved ones leave "mine".
    customer(
        &platform,
        &format!("/v1/support/sessions/{id}/messages"),
        json!({"content": "a real person please, a human", "stream": false}),
    )
    .await;
    let resolved = post(
        &platform,
        &format!("/console/api/conversations/{id}/resolve"),
        &tom,
        json!({}),
    )
    .await;
    assert_eq!(
        resolved.body["session"]["status"], "resolved",
        "{}",
        resolved.raw
    );
    let toms_inbox = get(&platform, "/console/api/inbox?view=mine", &tom).await;
    assert_eq!(toms_inbox.body["conversations"], json!([]));
    let all = get(&platform, "/console/api/inbox?view=all", &tom).await;
    assert_eq!(all.body["conversations"][0]["status"], "resolved");
    let unknown = get(&platform, "/console/api/conversations/sess_nope", &tom).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // Signing out ends the session on the server, not only in the browser.
    let out = post(&platform, "/console/api/logout", &sam, json!({})).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let after = get(&platform, "/console/api/me", &sam).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);

    // Failed sign-ins beyond the limit (3 here) are refused with 429, the right password too.
    for _ in 0..3 {
        let failed = login(&platform, "ana", "guessing again", &[]).await;
        assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
    }
    let limited = login(&platform, "ana", "correct horse", &[]).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.raw
    );
    assert_eq!(limited.body["error"]["code"], "too_many_login_attempts");
    let retry: u64 = limited.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_made_in_the_console_work_and_spend_shows_their_requests() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(dir.path());
    let ana = sign_in(&platform, "ana").await;
    let sam = sign_in(&platform, "sam").await;
    let refused = post(&platform, "/console/api/keys", &sam, json!({"name": "x"})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let bad = post(
        &platform,
        "/console/api/keys",
        &ana,
        json!({"name": "shop", "scopes": ["inference", "everything"]}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error"]["param"], "scopes");
    let made = post(
        &platform,
        "/console/api/keys",
        &ana,
        json!({"name": "shop", "scopes": ["inference"], "budget": 5.0, "period": "day",
               "requests_per_minute": 100}),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.raw);
    let secret = made.body["key"].as_str().unwrap().to_owned();
    assert_eq!(made.body["info"]["name"], "shop");
    let bearer = format!("Bearer {secret}");

    // The key works against the API, within its scopes.
    for _ in 0..2 {
        let chat = keyed(
            &platform,
            "POST",
            "/v1/chat/completions",
            &bearer,
            Some(json!({"model": "smollm2", "max_tokens": 4,
                        "messages": [{"role": "user", "content": "Hi"}]})),
        )
        .await;
        assert_eq!(chat.status, StatusCode::OK, "{}", chat.raw);
    }
    let out_of_scope = keyed(&platform, "GET", "/v1/usage", &bearer, None).await;
    assert_eq!(out_of_scope.status, StatusCode::FORBIDDEN);

    // The spend view, the request log and the budgets show those two requests.
    let spend = get(&platform, "/console/api/spend?days=7&by=key", &sam).await;
    assert_eq!(spend.status, StatusCode::OK, "{}", spend.raw);
    let row = &spend.body["rows"][0];
    assert_eq!(row["group"], "shop", "{}", spend.raw);
    assert_eq!(row["requests"], 2);
    assert!(row["prompt_tokens"].as_u64().unwrap() > 0);
    let point = &spend.body["series"][0];
    assert_eq!(point["day"], spend.body["to"], "{}", spend.raw);
    assert_eq!(point["requests"], 2);
    assert_eq!(
        spend.body["assumptions"]["reference_model"],
        platform.config().gateway.reference_model.as_str()
    );
    let bad_days = get(&platform, "/console/api/spend?days=0", &sam).await;
    assert_eq!(bad_days.body["error"]["param"], "days");
    let log = get(&platform, "/console/api/requests?limit=10", &sam).await;
    let requests = log.body["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "{}", log.raw);
    assert_eq!(requests[0]["api_key"], "shop");
    assert!(requests[0]["id"].as_i64() > requests[1]["id"].as_i64());
    assert!(!log.raw.contains("\"Hi\""), "no prompt text in the log");
    let budgets = get(&platform, "/console/api/budgets", &sam).await;
    let key = &budgets.body["keys"][0];
    assert_eq!(key["name"], "shop");
    assert_eq!(key["budget"], 5.0);
    let spent = key["spent"].as_f64().unwrap();
    assert!((key["remaining"].as_f64().unwrap() - (5.0 - spent)).abs() < 1e-9);
    // The keys' secrets never come back.
    let keys = get(&platform, "/console/api/keys", &ana).await;
    assert!(!keys.raw.contains(&secret));

    // Revoked in the console: refused by the API at once.
    let revoked = post(&platform, "/console/api/keys/shop/revoke", &ana, json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.raw);
    let after = keyed(&platform, "GET", "/v1/models", &bearer, None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------------------------
// Pulls from the console, against an in-process Hub.

mod fake_hub {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::{Body, Bytes};
    use axum::extract::{Request, State};
    use axum::http::{header, Method, StatusCode};
    use axum::response::Response;
    use sha2::{Digest, Sha256};

    pub const REPO: &str = "hearth-test/tiny-GGUF";
    pub const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";
    /// The GGUF goes out in chunks this big with a pause between them, so a pull takes long
    /// enough (about two seconds for SmolLM2) to be seen running.
    const CHUNK: usize = 1 << 20;
    const PAUSE: Duration = Duration::from_millis(25);

    pub struct Hub {
        /// The real SmolLM2 GGUF, served under two names.
        pub gguf: Bytes,
        sha: String,
    }

    fn not_found(code: &str) -> Response {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("x-error-code", code)
            .body(Body::from(format!("{{\"error\":\"{code}\"}}")))
            .unwrap()
    }

    const FILES: [&str; 2] = ["smollm2-Q4_1.gguf", "copy-Q8_0.gguf"];

    async fn handle(State(hub): State<Arc<Hub>>, request: Request) -> Response {
        let path = request.uri().path().trim_start_matches('/').to_owned();
        let api = format!("api/models/{REPO}/revision/");
        if let Some(revision) = path.strip_prefix(&api) {
            if revision != "main" && revision != COMMIT {
                return not_found("RevisionNotFound");
            }
            let siblings: Vec<_> = FILES
                .iter()
                .map(|f| {
                    serde_json::json!({"rfilename": f, "size": hub.gguf.len(),
                        "lfs": {"sha256": hub.sha, "size": hub.gguf.len()}})
                })
                .collect();
            let listing = serde_json::json!({"id": REPO, "sha": COMMIT, "siblings": siblings});
            return Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(listing.to_string()))
                .unwrap();
        }
        let Some(file) = path
            .strip_prefix(&format!("{REPO}/resolve/"))
            .and_then(|rest| rest.split_once('/'))
            .map(|(_, file)| file.to_owned())
        else {
            return not_found("RepoNotFound");
        };
        if !FILES.contains(&file.as_str()) {
            return not_found("EntryNotFound");
        }
        let start = request
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0)
            .min(hub.gguf.len());
        let body = hub.gguf.slice(start..);
        let mut response = Response::builder()
            .status(if start > 0 {
                StatusCode::PARTIAL_CONTENT
            } else {
                StatusCode::OK
            })
            .header("x-repo-commit", COMMIT)
            .header("x-linked-etag", format!("\"{}\"", hub.sha))
            .header("x-linked-size", hub.gguf.len())
            .header(header::ETAG, format!("\"{}\"", hub.sha))
            .header(header::CONTENT_LENGTH, body.len());
        if start > 0 {
            response = response.header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{}", hub.gguf.len() - 1, hub.gguf.len()),
            );
        }
        if request.method() == Method::HEAD {
            return response.body(Body::empty()).unwrap();
        }
        let stream = futures::stream::unfold(body, |rest| async move {
            if rest.is_empty() {
                return None;
            }
            tokio::time::sleep(PAUSE).await;
            let n = rest.len().min(CHUNK);
            Some((
                Ok::<Bytes, std::io::Error>(rest.slice(..n)),
                rest.slice(n..),
            ))
        });
        response.body(Body::from_stream(stream)).unwrap()
    }

    /// Serves the hub on a free loopback port; answers its URL.
    pub async fn start(gguf: Vec<u8>) -> (String, Arc<Hub>) {
        let hub = Arc::new(Hub {
            sha: hex::encode(Sha256::digest(&gguf)),
            gguf: Bytes::from(gguf),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(handle).with_state(hub.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{address}"), hub)
    }
}

/// The pull as the list shows it now.
async fn pull_state(platform: &Platform, who: &Browser, id: &str) -> Value {
    let list = get(platform, "/console/api/models/pulls", who).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.raw);
    list.body["pulls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("pull {id} not listed: {}", list.raw))
        .clone()
}

/// Waits (up to a minute) for pull `id` to leave `running`; answers it.
async fn pull_finished(platform: &Platform, who: &Browser, id: &str) -> (Value, bool) {
    let mut seen_midway = false;
    for _ in 0..1200 {
        let pull = pull_state(platform, who, id).await;
        if pull["state"] != "running" {
            return (pull, seen_midway);
        }
        if let (Some(done), Some(total)) =
            (pull["bytes_done"].as_u64(), pull["bytes_total"].as_u64())
        {
            seen_midway |= done > 0 && done < total;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("pull {id} still running after a minute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_pulls_a_model_from_the_console_and_sees_it_arrive() {
    let gguf = std::fs::read(hearth_testdata::models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf"))
        .unwrap();
    let (endpoint, hub) = fake_hub::start(gguf).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    config.store.url = hearth_testdata::test_store_url(dir.path()).map(StoreUrl::new);
    let cache = dir.path().join("hub");
    let p = Platform::open_with_hub(
        config,
        hearth_infer::hub::HubOptions {
            endpoint: format!(
                "http://mirror:s3cret@{}",
                endpoint.trim_start_matches("http://")
            ),
            cache_dir: cache.clone(),
            token: None,
            offline: false,
        },
    )
    .unwrap();
    let accounts = p.accounts().unwrap();
    accounts
        .create("ana", Role::Admin, "correct horse")
        .unwrap();
    accounts
        .create("vic", Role::Viewer, "correct horse")
        .unwrap();
    let admin = sign_in(&p, "ana").await;
    let viewer = sign_in(&p, "vic").await;

    // The page may show where pulls come from, never a mirror's credentials.
    let list = get(&p, "/console/api/models/pulls", &viewer).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.raw);
    assert_eq!(list.body["can_pull"], false);
    assert!(!list.raw.contains("s3cret"), "{}", list.raw);
    assert!(list.body["endpoint"]
        .as_str()
        .unwrap()
        .ends_with(&endpoint[endpoint.rfind(':').unwrap()..]));
    assert_eq!(
        get(&p, "/console/api/models/pulls", &admin).await.body["can_pull"],
        true
    );

    // Bad input names its field; a viewer is refused by the server.
    let pulls = "/console/api/models/pulls";
    for (body, param) in [
        (json!({"model": "not a repo"}), "model"),
        (json!({"model": "../../etc/passwd"}), "model"),
        (
            json!({"model": format!("{}:Q4_1", fake_hub::REPO), "revision": "../main"}),
            "revision",
        ),
    ] {
        let a = post(&p, pulls, &admin, body.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.raw);
        assert_eq!(a.body["error"]["param"], param, "{}", a.raw);
    }
    let a = post(
        &p,
        pulls,
        &admin,
        json!({"model": "x/y", "mirror": "http://evil"}),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "unknown fields are refused: {}",
        a.raw
    );
    let model = format!("{}:Q4_1", fake_hub::REPO);
    let a = post(&p, pulls, &viewer, json!({ "model": model })).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.raw);
    assert_eq!(a.body["error"]["code"], "role_forbidden");
    let a = send(
        &p,
        "POST",
        pulls,
        Some(&admin),
        None,
        Some(json!({ "model": model })),
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "no CSRF token: {}", a.raw);
    assert!(get(&p, pulls, &admin).await.body["pulls"]
        .as_array()
        .unwrap()
        .is_empty());

    let missing = json!({"model": "hearth-test/missing-GGUF"});
    // Two pulls run; the same one again is a conflict, a third is refused with Retry-After.
    let a = post(&p, pulls, &admin, json!({ "model": model })).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.raw);
    let first = a.body["pull"]["id"].as_str().unwrap().to_owned();
    assert_eq!(a.body["pull"]["state"], "running");
    assert_eq!(a.body["pull"]["model"], model);
    let again = post(
        &p,
        pulls,
        &admin,
        json!({ "model": model, "revision": "main" }),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.raw);
    assert_eq!(again.body["error"]["code"], "pull_in_progress");
    let copy = format!("{}:Q8_0", fake_hub::REPO);
    let a = post(&p, pulls, &admin, json!({ "model": copy })).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.raw);
    let second = a.body["pull"]["id"].as_str().unwrap().to_owned();
    let a = post(&p, pulls, &admin, missing.clone()).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.raw);
    assert_eq!(a.body["error"]["code"], "too_many_pulls");
    assert!(a.headers.contains_key(header::RETRY_AFTER));

    // A viewer cannot cancel; an admin can, and the cancelled pull stays cancelled.
    let cancel = format!("{pulls}/{second}/cancel");
    assert_eq!(
        post(&p, &cancel, &viewer, json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    let a = post(&p, &cancel, &admin, json!({})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.raw);
    assert_eq!(a.body["pull"]["state"], "cancelled");
    let a = post(&p, &format!("{pulls}/p999/cancel"), &admin, json!({})).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.raw);
    assert_eq!(a.body["error"]["code"], "pull_not_found");

    // The first arrives, with its progress seen on the way, and is listed as a local model.
    let (pull, seen_midway) = pull_finished(&p, &admin, &first).await;
    assert_eq!(pull["state"], "done", "{pull}");
    assert!(
        seen_midway,
        "the pull's progress was never seen between 0 and its total"
    );
    let size = hub.gguf.len() as u64;
    assert_eq!(
        (pull["bytes_done"].as_u64(), pull["bytes_total"].as_u64()),
        (Some(size), Some(size)),
        "{pull}"
    );
    assert_eq!(pull["commit"], fake_hub::COMMIT);
    assert_eq!(pull["files"].as_array().unwrap().len(), 1, "{pull}");
    assert_eq!(pull["files"][0]["done"], true);
    assert!(
        pull["path"]
            .as_str()
            .unwrap()
            .ends_with("smollm2-Q4_1.gguf"),
        "{pull}"
    );
    assert!(
        pull["path"]
            .as_str()
            .unwrap()
            .starts_with(cache.to_str().unwrap()),
        "{pull}"
    );
    let name = pull["name"]
        .as_str()
        .expect("the name it is served as")
        .to_owned();
    let models = get(&p, "/console/api/models", &viewer).await;
    assert!(
        models.body["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == name.as_str()),
        "{name} not among {}",
        models.raw
    );
    assert_eq!(pull_state(&p, &admin, &second).await["state"], "cancelled");

    // An unknown repo ends failed, saying why.
    let a = post(&p, pulls, &admin, missing.clone()).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.raw);
    let id = a.body["pull"]["id"].as_str().unwrap().to_owned();
    let (pull, _) = pull_finished(&p, &admin, &id).await;
    assert_eq!(pull["state"], "failed", "{pull}");
    assert_eq!(pull["error"]["code"], "hub_not_found", "{pull}");
    let message = pull["error"]["message"].as_str().unwrap();
    assert!(message.contains("missing-GGUF"), "{message}");
    assert!(
        !message.contains("s3cret"),
        "the mirror's password shown: {message}"
    );
}
