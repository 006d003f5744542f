//! The checks every request passes before a handler sees it: the `Host` it names (DNS
//! rebinding) and the `Origin` of a state-changing request (cross-site requests from a page
//! the operator visits), for every route; and, once the key is checked, the body's size: read
//! whole, so an oversize body is answered with a 413 the client can read instead of a reset
//! connection.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::{ApiError, AppState};
use hearth_types::ErrorCode;

/// How much of an oversize body is read (and thrown away) so that the client, still
/// sending, reads the 413 instead of a connection reset; past this the connection is closed.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

pub async fn check_request(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let server = &state.platform.config().server;
    let host = request_host(&request);
    if let Some(host) = host.as_deref() {
        if !host_allowed(host, &server.allowed_hosts) {
            return ApiError::new(
                ErrorCode::HostNotAllowed,
                format!(
                    "Host '{}' is not one this server answers to: add it to [server] \
                     allowed_hosts (localhost names and IP addresses are always allowed)",
                    printable(host)
                ),
            )
            .into_response();
        }
    }
    if changes_state(request.method()) {
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !origin_allowed(origin, host.as_deref(), &server.allowed_origins) {
                return ApiError::new(
                    ErrorCode::OriginNotAllowed,
                    format!(
                        "requests from pages at '{}' are refused: add the origin to [server] \
                         allowed_origins to let that site call this server",
                        printable(origin)
                    ),
                )
                .into_response();
            }
        }
    }
    next.run(request).await
}

/// Reads the body whole (bounded) before the handler. Layered inside authentication, so a
/// client without a key never makes the server read a body.
pub async fn read_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let max = state.platform.config().server.max_body_bytes;
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) && expects_continue(&parts.headers) {
        // The client waits for our go-ahead before sending: answer without reading.
        return too_large(max);
    }
    let bytes = match read_limited(body, max).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => return too_large(max),
        Err(BodyError::Broken(message)) => {
            return ApiError::new(ErrorCode::UnreadableBody, message).into_response()
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn too_large(max: usize) -> Response {
    let mut response = ApiError::new(
        ErrorCode::BodyTooLarge,
        format!("the request body is larger than server.max_body_bytes ({max} bytes) allows"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, "close".parse().expect("static header"));
    response
}

enum BodyError {
    TooLarge,
    Broken(String),
}

/// The whole body if it is at most `max` bytes; else reads on (discarding, bounded) so the
/// client gets to read the answer.
async fn read_limited(body: Body, max: usize) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut kept: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Broken(format!("reading the body: {e}")))?;
        if kept.len() + chunk.len() > max {
            let started = Instant::now();
            let mut drained = kept.len() + chunk.len();
            drop(kept);
            while drained < DRAIN_BYTES && started.elapsed() < DRAIN_TIME {
                match tokio::time::timeout(DRAIN_TIME, stream.next()).await {
                    Ok(Some(Ok(chunk))) => drained += chunk.len(),
                    _ => break,
                }
            }
            return Err(BodyError::TooLarge);
        }
        if kept.is_empty() {
            kept.reserve(chunk.len());
        }
        kept.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(kept))
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

fn changes_state(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The host the request names (`Host`, or the URI's authority for HTTP/2), lowercased,
/// with its port.
fn request_host(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
        .map(|h| h.trim().to_ascii_lowercase())
}

/// `host[:port]` without the port (IPv6 literals keep their brackets off).
fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Localhost names and IP literals always pass: a DNS-rebinding page reaches this server
/// under its own domain name, never under an address. Other names must be configured
/// (`*.example.com` covers subdomains; `*` turns the check off).
pub(crate) fn host_allowed(authority: &str, allowed: &[String]) -> bool {
    let host = strip_port(authority)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let host = host.as_str();
    if host.is_empty() {
        return false;
    }
    if host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok()
    {
        return true;
    }
    allowed.iter().any(|pattern| {
        let pattern = pattern.trim().to_ascii_lowercase();
        let pattern = strip_port(&pattern).trim_end_matches('.');
        pattern == "*"
            || pattern == host
            || pattern
                .strip_prefix("*.")
                .is_some_and(|domain| host.ends_with(&format!(".{domain}")))
    })
}

/// A page's own server (the same host and port), or an origin the operator listed.
pub(crate) fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    let origin = origin.trim().to_ascii_lowercase();
    if allowed.iter().any(|a| {
        let a = a.trim().trim_end_matches('/').to_ascii_lowercase();
        a == "*" || a == origin
    }) {
        return true;
    }
    // "null" (sandboxed frames, files) and anything unparsable are foreign.
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    if !matches!(scheme, "http" | "https") {
        return false;
    }
    host.is_some_and(|host| same_authority(authority, host, scheme))
}

fn same_authority(origin: &str, host: &str, scheme: &str) -> bool {
    let default_port = if scheme == "https" { "443" } else { "80" };
    let split = |a: &str| -> (String, String) {
        let name = strip_port(a).to_owned();
        let port = a
            .rsplit_once(':')
            .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()) && !a.ends_with(']'))
            .map(|(_, p)| p.to_owned())
            .unwrap_or_else(|| default_port.to_owned());
        (name, port)
    };
    split(origin) == split(host)
}

/// A header value fit for an error message: printable ASCII, at most 200 characters.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let none: Vec<String> = Vec::new();
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST:8080",
            "app.localhost",
            "127.0.0.1:8080",
            "10.1.2.3",
            "[::1]:8080",
            "[fe80::1]",
        ] {
            assert!(host_allowed(ok, &none), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "",
        ] {
            assert!(!host_allowed(bad, &none), "{bad}");
        }
        let listed = vec!["hearth.corp.example".to_owned(), "*.svc.local".to_owned()];
        assert!(host_allowed("hearth.corp.example:443", &listed));
        assert!(host_allowed("api.svc.local", &listed));
        assert!(!host_allowed("svc.local.evil", &listed));
        assert!(!host_allowed("evilsvc.local", &listed));
        assert!(host_allowed("anything", &["*".to_owned()]));
    }

    #[test]
    fn origins() {
        let none: Vec<String> = Vec::new();
        assert!(origin_allowed(
            "http://127.0.0.1:8080",
            Some("127.0.0.1:8080"),
            &none
        ));
        assert!(origin_allowed(
            "http://localhost",
            Some("localhost:80"),
            &none
        ));
        assert!(!origin_allowed(
            "http://127.0.0.1:9999",
            Some("127.0.0.1:8080"),
            &none
        ));
        assert!(!origin_allowed(
            "https://evil.example",
            Some("127.0.0.1:8080"),
            &none
        ));
        assert!(!origin_allowed("null", Some("127.0.0.1:8080"), &none));
        assert!(!origin_allowed("http://evil.example", None, &none));
        let listed = vec!["https://app.example.com/".to_owned()];
        assert!(origin_allowed(
            "https://app.example.com",
            Some("127.0.0.1:8080"),
            &listed
        ));
        assert!(!origin_allowed(
            "https://app.example.com.evil",
            Some("127.0.0.1:8080"),
            &listed
        ));
    }
}
