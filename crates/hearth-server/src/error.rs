//! Every error hearth answers with, mapped exhaustively to an HTTP status and OpenAI's error
//! shape `{"error":{message,type,param,code}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hearth_gateway::GatewayError;
use hearth_infer::InferError;
use hearth_types::{ErrorCode, OpenAiError, OpenAiErrorBody, Retry};

/// An error on its way to the client. Its status, OpenAI error `type` and default
/// `Retry-After` come from the code's row in [`ErrorCode`]'s table.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub status: StatusCode,
    pub message: String,
    pub param: Option<String>,
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            status: StatusCode::from_u16(code.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
            param: None,
            retry_after: match code.retry() {
                Some(Retry::After(seconds)) => Some(seconds),
                _ => None,
            },
        }
    }

    /// A crate's error `e` answered by its code, naming `param`; a failure of hearth's own (a
    /// 5xx a retry would not mend) is logged with the full error.
    pub fn of(
        code: ErrorCode,
        e: &dyn std::fmt::Display,
        param: Option<String>,
        retry_after: Option<u32>,
    ) -> Self {
        let error = ApiError {
            param,
            ..ApiError::new(code, e.to_string()).with_retry_after(retry_after)
        };
        if error.status.is_server_error() && error.retry_after.is_none() {
            tracing::error!(error = %e, "request failed");
        }
        error
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// For codes whose error carries its own `Retry-After` ([`Retry::AsSent`]), or a variant
    /// that waits longer than its code's default.
    pub fn with_retry_after(mut self, seconds: Option<u32>) -> Self {
        if seconds.is_some() {
            self.retry_after = seconds;
        }
        self
    }

    pub fn body(&self) -> OpenAiErrorBody {
        OpenAiErrorBody {
            error: OpenAiError {
                message: self.message.clone(),
                kind: self.code.kind().to_owned(),
                param: self.param.clone(),
                code: Some(self.code.as_str().to_owned()),
            },
        }
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        // The codes' defaults hold except where the error knows better.
        let retry_after = match &e {
            GatewayError::RateLimited { retry_after, .. }
            | GatewayError::Unavailable { retry_after, .. } => Some(*retry_after as u32),
            GatewayError::BudgetExceeded { retry_after, .. } => {
                retry_after.map(|s| s.min(u32::MAX as u64) as u32)
            }
            GatewayError::Infer(InferError::QueueTimeout { .. }) => Some(2),
            _ => None,
        };
        ApiError::of(e.code(), &e, e.param().map(str::to_owned), retry_after)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md");

    /// Every row of the table answers as it says: status, OpenAI type, Retry-After.
    #[test]
    fn every_code_answers_with_its_rows_status_and_retry() {
        for &code in ErrorCode::ALL {
            let response = ApiError::new(code, "m").into_response();
            assert_eq!(response.status().as_u16(), code.status(), "{code}");
            let retry = response
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.to_str().unwrap().parse::<u32>().unwrap());
            match code.retry() {
                Some(Retry::After(s)) => assert_eq!(retry, Some(s), "{code}"),
                _ => assert_eq!(retry, None, "{code}"),
            }
            let body = ApiError::new(code, "m").body();
            assert_eq!(body.error.code.as_deref(), Some(code.as_str()));
            assert_eq!(body.error.kind, code.kind());
        }
        // A code that waits for the error's own Retry-After takes it.
        let limited = ApiError::new(ErrorCode::RateLimitExceeded, "m").with_retry_after(Some(7));
        assert_eq!(limited.retry_after, Some(7));
    }

    /// docs/errors.md is the table (regenerate with HEARTH_WRITE_DOCS=1).
    #[test]
    fn the_docs_list_every_code() {
        let table = ErrorCode::markdown_table();
        let doc = std::fs::read_to_string(DOC).unwrap_or_default();
        if std::env::var_os("HEARTH_WRITE_DOCS").is_some() {
            let start = doc.find("| code |").unwrap_or(doc.len());
            let end = doc[start..]
                .find("\n\n")
                .map(|i| start + i + 1)
                .unwrap_or(doc.len());
            let new = format!("{}{}{}", &doc[..start], table, &doc[end..]);
            std::fs::write(DOC, new).unwrap();
            return;
        }
        assert!(
            doc.contains(&table),
            "docs/errors.md does not hold the current error table; run this test with HEARTH_WRITE_DOCS=1"
        );
    }

    /// The served spec's error schema allows exactly the table's codes.
    #[test]
    fn the_spec_enumerates_the_codes() {
        let spec: serde_json::Value = serde_json::from_str(&crate::openapi_spec()).unwrap();
        let codes = spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
            ["code"]["enum"]
            .as_array()
            .unwrap();
        assert_eq!(codes.len(), ErrorCode::ALL.len() + 1);
        for code in ErrorCode::ALL {
            assert!(codes.contains(&serde_json::json!(code.as_str())), "{code}");
            assert_eq!(
                spec["x-error-codes"][code.as_str()]["status"],
                code.status(),
                "{code}"
            );
        }
    }

    /// Each crate's errors land on their code's status (spot checks of every mapping path).
    #[test]
    fn crate_errors_map_through_the_table() {
        let e = ApiError::from(GatewayError::Infer(InferError::QueueTimeout {
            waited_ms: 5,
        }));
        assert_eq!((e.status.as_u16(), e.retry_after), (503, Some(2)));
        assert_eq!(e.code, "overloaded");
        let e = ApiError::from(GatewayError::Infer(InferError::InvalidParameter {
            param: "temperature".into(),
            message: "too hot".into(),
        }));
        assert_eq!(
            (e.status.as_u16(), e.code),
            (400, ErrorCode::InvalidRequest)
        );
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = ApiError::from(GatewayError::BudgetExceeded {
            key: "k".into(),
            budget: 1.0,
            spent: 1.0,
            reserved: 0.0,
            retry_after: None,
        });
        assert_eq!((e.status.as_u16(), e.retry_after), (429, None));
    }
}
