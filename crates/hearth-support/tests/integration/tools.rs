//! Tool calls cannot be steered by their arguments: an adversarial corpus of argument values
//! against a backend that logs every request it receives.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use hearth_support::tools::{HttpCall, ToolBox, ToolError, ToolSpec, Variables};
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Every request line (`METHOD target`) and body the backend received.
type Log = Arc<Mutex<Vec<(String, String)>>>;

/// A backend on `ip:0` that logs each request and answers `{"ok":true}`, or a 302 to
/// `redirect` for `/redirect`.
async fn backend(ip: &str, redirect: Option<String>) -> (String, Log) {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            let redirect = redirect.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let line = head.lines().next().unwrap_or("").to_string();
                let mut parts = line.split(' ');
                let request = format!(
                    "{} {}",
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or("")
                );
                let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
                let to = redirect.filter(|_| request.ends_with(" /redirect"));
                seen.lock().unwrap().push((request, body));
                let answer = match to {
                    Some(to) => format!(
                        "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    ),
                    None => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"ok\":true}".to_string(),
                };
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (base, log)
}

fn tool(name: &str, method: &str, url: &str, parameters: Value) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: format!("{name} for tests"),
        parameters,
        consequential: false,
        http: HttpCall {
            method: method.into(),
            url: url.into(),
            headers: BTreeMap::new(),
            timeout_seconds: 5,
            allowed_hosts: Vec::new(),
        },
    }
}

/// `get_order` and `cancel_order` as a shop declares them, without `additionalProperties`.
fn order_tools(base: &str) -> ToolBox {
    let order = json!({
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "reason": {"type": "string"}},
        "required": ["order_id"],
    });
    let vars = Variables(HashMap::from([("SHOP".into(), base.to_string())]));
    ToolBox::new(
        vec![
            tool(
                "get_order",
                "GET",
                "${SHOP}/orders/{order_id}",
                order.clone(),
            ),
            tool(
                "cancel_order",
                "POST",
                "${SHOP}/orders/{order_id}/cancel",
                order,
            ),
        ],
        vars,
    )
    .unwrap()
}

fn corpus() -> Vec<String> {
    let mut values: Vec<String> = [
        "",
        ".",
        "..",
        "../..",
        "../../admin",
        "%2e%2e",
        ".%2e",
        "%2E.",
        "..%2f",
        "..%2F..%2Fadmin",
        "..\\..\\admin",
        "a/../../admin",
        "/admin",
        "//evil.example/x",
        "@evil.example",
        "http://evil.example/",
        "?admin=1",
        "&admin=1",
        "#W1?x=1#frag",
        "a b",
        "a+b",
        "%",
        "%zz",
        "%00",
        "\0",
        "\r\nX-Injected: 1",
        "\n",
        "..;",
        ";..",
        ". .",
        "...",
        "ünïcødé",
        "名前",
        "\u{202e}..",
        "\u{ff0e}\u{ff0e}",
        "#W0000001",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    values.push("a".repeat(5000));
    values
}

#[tokio::test]
async fn adversarial_path_arguments_never_leave_their_segment() {
    let (base, log) = backend("127.0.0.1", None).await;
    let tools = order_tools(&base);
    for (tool, suffix, method) in [
        ("get_order", "", "GET"),
        ("cancel_order", "/cancel", "POST"),
    ] {
        for value in corpus() {
            log.lock().unwrap().clear();
            let result = tools.call(tool, &json!({ "order_id": value })).await;
            let seen = log.lock().unwrap().clone();
            if value.is_empty() || value == "." || value == ".." {
                assert!(
                    matches!(result, Err(ToolError::InvalidArguments { ref message, .. }) if message.contains("order_id")),
                    "{tool} {value:?}: {result:?}"
                );
                assert!(seen.is_empty(), "{tool} {value:?} reached {seen:?}");
                continue;
            }
            assert_eq!(result, Ok(json!({"ok": true})), "{tool} {value:?}");
            assert_eq!(seen.len(), 1, "{tool} {value:?}: {seen:?}");
            let (request, _) = &seen[0];
            let (got_method, target) = request.split_once(' ').unwrap();
            assert_eq!(got_method, method);
            assert!(!target.contains('?'), "{value:?} added a query: {target}");
            let rest = target
                .strip_prefix("/orders/")
                .unwrap_or_else(|| panic!("{value:?} left /orders/: {target}"));
            let segment = rest
                .strip_suffix(suffix)
                .unwrap_or_else(|| panic!("{value:?} changed the path: {target}"));
            assert!(!segment.contains('/'), "{value:?} split the path: {target}");
            assert_eq!(
                percent_decode_str(segment).decode_utf8().unwrap(),
                value.as_str(),
                "{tool}: the segment is not the argument"
            );
        }
    }
}

#[tokio::test]
async fn undeclared_arguments_are_refused_before_anything_is_sent() {
    let (base, log) = backend("127.0.0.1", None).await;
    let tools = order_tools(&base);
    for (tool, args) in [
        ("get_order", json!({"order_id": "#W1", "admin": "1"})),
        ("get_order", json!({"order_id": "#W1", "order_id ": "x"})),
        ("cancel_order", json!({"order_id": "#W1", "refund_to": "x"})),
    ] {
        let result = tools.call(tool, &args).await;
        assert!(
            matches!(result, Err(ToolError::InvalidArguments { .. })),
            "{tool} {args}: {result:?}"
        );
    }
    assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
    // The declared ones still travel: the query of a GET, the body of a POST.
    tools
        .call("get_order", &json!({"order_id": "#W1", "reason": "a&b=c"}))
        .await
        .unwrap();
    tools
        .call(
            "cancel_order",
            &json!({"order_id": "#W1", "reason": "changed mind"}),
        )
        .await
        .unwrap();
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen[0].0, "GET /orders/%23W1?reason=a%26b%3Dc");
    assert_eq!(seen[1].0, "POST /orders/%23W1/cancel");
    assert_eq!(
        serde_json::from_str::<Value>(&seen[1].1).unwrap(),
        json!({"reason": "changed mind"})
    );
    // What the model is shown is the closed schema it is held to.
    let spec = tools.spec("get_order").unwrap();
    assert_eq!(spec.parameters["additionalProperties"], json!(false));
}

#[tokio::test]
async fn a_schema_that_opens_itself_keeps_its_extra_arguments() {
    let (base, log) = backend("127.0.0.1", None).await;
    let vars = Variables(HashMap::from([("SHOP".into(), base)]));
    let open =
        json!({"type": "object", "properties": {}, "additionalProperties": {"type": "string"}});
    let tools = ToolBox::new(vec![tool("search", "GET", "${SHOP}/search", open)], vars).unwrap();
    tools.call("search", &json!({"q": "boots"})).await.unwrap();
    assert_eq!(log.lock().unwrap()[0].0, "GET /search?q=boots");
}

#[tokio::test]
async fn arguments_cannot_stand_in_the_host_and_calls_stay_on_their_hosts() {
    let vars = Variables::default();
    let schema =
        json!({"type": "object", "properties": {"shop": {"type": "string"}}, "required": ["shop"]});
    for url in [
        "http://{shop}.example.com/orders",
        "http://{shop}/orders",
        "http://user:{shop}@example.com/orders",
        "file:///etc/{shop}",
    ] {
        let err = ToolBox::new(vec![tool("t", "GET", url, schema.clone())], vars.clone())
            .err()
            .unwrap_or_else(|| panic!("{url} was accepted"))
            .to_string();
        assert!(
            err.contains("tools.t") && err.contains("url"),
            "{url}: {err}"
        );
    }

    // A backend that redirects elsewhere: the other host is never reached unless listed.
    let (other, other_log) = backend("127.0.0.2", None).await;
    let (base, log) = backend("127.0.0.1", Some(format!("{other}/stolen"))).await;
    let vars = Variables(HashMap::from([("SHOP".into(), base.clone())]));
    let empty = json!({"type": "object", "properties": {}});
    let tools = ToolBox::new(
        vec![tool("go", "GET", "${SHOP}/redirect", empty.clone())],
        vars.clone(),
    )
    .unwrap();
    let result = tools.call("go", &json!({})).await;
    assert!(
        matches!(result, Err(ToolError::Unavailable { ref message, .. }) if message.contains("redirect")),
        "{result:?}"
    );
    assert_eq!(log.lock().unwrap().len(), 1);
    assert!(other_log.lock().unwrap().is_empty());

    let mut listed = tool("go", "GET", "${SHOP}/redirect", empty);
    listed.http.allowed_hosts = vec![other.trim_start_matches("http://").to_string()];
    let tools = ToolBox::new(vec![listed], vars).unwrap();
    assert_eq!(tools.call("go", &json!({})).await, Ok(json!({"ok": true})));
    assert_eq!(other_log.lock().unwrap()[0].0, "GET /stolen");

    let mut bad = tool(
        "t",
        "GET",
        "http://example.com/x",
        json!({"type": "object"}),
    );
    bad.http.allowed_hosts = vec!["http://x/y".into()];
    let err = ToolBox::new(vec![bad], Variables::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("allowed_hosts"), "{err}");
}
