//! JSON body and query-string extractors whose errors are OpenAI-shaped and name the field
//! at fault.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::ApiError;
use hearth_types::ErrorCode;

/// A query string read as `T`; a bad one is a 400 in the API's error shape (axum's own
/// rejection is plain text).
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
        Ok(ApiQuery(value))
    }
}

pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json_content_type(request.headers())?;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        ErrorCode::BodyTooLarge,
                        "the request body is larger than server.max_body_bytes allows",
                    )
                } else {
                    ApiError::new(ErrorCode::UnreadableBody, rejection.body_text())
                }
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// JSON routes take JSON only: a browser may send `text/plain` (or a typeless blob) to any
/// site without asking first, so a body that does not say it is JSON is refused (415).
pub fn require_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if json {
        return Ok(());
    }
    let got = if value.is_empty() {
        "no Content-Type".to_owned()
    } else {
        format!(
            "Content-Type '{}'",
            value.chars().take(100).collect::<String>()
        )
    };
    Err(ApiError::new(
        ErrorCode::UnsupportedMediaType,
        format!("the body must be JSON sent with 'Content-Type: application/json' (got {got})"),
    ))
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body of this API is one JSON object (serde would also read a struct from an
    // array of its fields).
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| {
        b == b'[' || b == b'"' || b == b'-' || b.is_ascii_digit() || b"tfn".contains(&b)
    }) {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "the body must be a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = deserialize(de, bytes)?;
    de.end().map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {e} (one JSON value only)"),
        )
    })?;
    Ok(value)
}

fn deserialize<'de, T: DeserializeOwned>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
    bytes: &[u8],
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::new(
                ErrorCode::InvalidJson,
                format!("the body is not valid JSON: {inner}"),
            );
        }
        let mut path = e.path().to_string();
        let mut message = inner.to_string();
        // Flattened fields (the sampling parameters) lose their path inside serde's flatten
        // buffer; deserializing them on their own finds the field at fault.
        if path == "." && !message.starts_with("missing field") {
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
                if let Err(flat) =
                    serde_path_to_error::deserialize::<_, hearth_types::SamplingFields>(value)
                {
                    path = flat.path().to_string();
                    message = flat.inner().to_string();
                }
            }
        }
        // serde reports a missing field at its parent's path; name the field itself.
        let param = match message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            Some(field) if path == "." => field.to_owned(),
            Some(field) => format!("{path}.{field}"),
            None => path,
        };
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("invalid '{param}': {message}"),
        )
        .with_param(param)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_types::ChatCompletionRequest;

    #[test]
    fn errors_name_the_field() {
        let err = parse_json::<ChatCompletionRequest>(br#"{"messages": []}"#).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("model"));
        let err = parse_json::<ChatCompletionRequest>(
            br#"{"model": "m", "messages": [{"content": "x"}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].role"));
        let err = parse_json::<ChatCompletionRequest>(
            br#"{"model": "m", "messages": [], "temperature": "hot"}"#,
        )
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("temperature"));
        let err = parse_json::<ChatCompletionRequest>(b"{not json").unwrap_err();
        assert_eq!(err.code, "invalid_json");
        let err =
            parse_json::<ChatCompletionRequest>(br#"{"model": "m", "messages": []} {"x": 1}"#)
                .unwrap_err();
        assert_eq!(err.code, "invalid_json");
        let err =
            parse_json::<ChatCompletionRequest>(br#"{"model": "m", "messages": []}]"#).unwrap_err();
        assert_eq!(err.code, "invalid_json");
        assert!(
            parse_json::<ChatCompletionRequest>(b"{\"model\": \"m\", \"messages\": []}\n ").is_ok()
        );
        // A struct's fields as an array, or any other JSON value: not an object body.
        for body in [&br#"["m", []]"#[..], b"\"m\"", b"42", b"null", b" true"] {
            let err = parse_json::<ChatCompletionRequest>(body).unwrap_err();
            assert_eq!(err.code, "invalid_json");
            assert!(err.message.contains("JSON object"), "{}", err.message);
        }
    }

    #[test]
    fn only_json_content_types_pass() {
        let with = |value: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(v) = value {
                headers.insert(header::CONTENT_TYPE, v.parse().unwrap());
            }
            require_json_content_type(&headers).map_err(|e| e.status)
        };
        assert!(with(Some("application/json")).is_ok());
        assert!(with(Some("Application/JSON; charset=utf-8")).is_ok());
        assert!(with(Some("application/merge-patch+json")).is_ok());
        for bad in [
            None,
            Some("text/plain"),
            Some("text/plain; application/json"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
        ] {
            assert_eq!(
                with(bad),
                Err(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                "{bad:?}"
            );
        }
    }
}
