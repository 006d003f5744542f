//! The one table of public error codes.
//!
//! Every error hearth answers with carries one of these codes: its HTTP status, whether the
//! client should retry and after how long, and what it means all come from this table. Each
//! crate's error enum maps its variants onto it with an exhaustive `code()`; the server turns
//! the code into the status, the `Retry-After` header and the OpenAI error `type`. The table is
//! published in docs/errors.md (a test keeps the two equal) and as the `code` enum of the API's
//! error schema.

use std::fmt;

macro_rules! error_codes {
    ($($variant:ident = $code:literal, $status:literal, $retry:expr, $meaning:literal;)*) => {
        /// A stable public error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $(#[doc = $meaning] $variant,)*
        }

        impl ErrorCode {
            /// Every code, in the table's order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as clients see it (`error.code`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status it is answered with.
            pub fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }

            /// How a client should retry: `None` for errors a retry would not mend.
            pub fn retry(self) -> Option<Retry> {
                match self {
                    $(ErrorCode::$variant => $retry,)*
                }
            }

            /// What it means and what to do about it.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $meaning,)*
                }
            }
        }
    };
}

/// How a client should retry an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Retry {
    /// After this many seconds, sent as `Retry-After`.
    After(u32),
    /// After the `Retry-After` the error carries (a rate window or budget period that ends,
    /// a cool-down); without one, not before the limit is raised.
    AsSent,
}

use Retry::{After, AsSent};

error_codes! {
    // The request.
    InvalidRequest = "invalid_request", 400, None,
        "A field has a value hearth does not accept (out of range, wrong type, unknown, too long); `param` names it.";
    InvalidJson = "invalid_json", 400, None,
        "The body is not one JSON object.";
    UnreadableBody = "unreadable_body", 400, None,
        "The body could not be read: its length or transfer encoding is wrong.";
    BodyTooLarge = "body_too_large", 413, None,
        "The body is larger than `[server] max_body_bytes` allows.";
    UnsupportedMediaType = "unsupported_media_type", 415, None,
        "A body was sent without `Content-Type: application/json`.";
    ContextLengthExceeded = "context_length_exceeded", 400, None,
        "The prompt plus `max_tokens` does not fit the model's context; shorten one of them.";
    WrongModelKind = "wrong_model_kind", 400, None,
        "The model is of the wrong kind for this route (an embedding model asked to chat, or the reverse).";
    PiiRefused = "pii_refused", 400, None,
        "The route refuses a kind of personal data found in the field `param` names; nothing was sent or charged.";
    UpstreamRejected = "upstream_rejected", 400, None,
        "The upstream model endpoint refused the request as invalid; its message is passed on.";
    NotEnoughData = "not_enough_data", 400, None,
        "There is too little data to train on (events, labelled messages); import more.";
    BadFile = "bad_file", 400, None,
        "A data file cannot be read as its format; the message names the file.";
    BadRow = "bad_row", 400, None,
        "A row of a data file is invalid; the message names the file and line.";
    // Who asks.
    MissingApiKey = "missing_api_key", 401, None,
        "No API key was sent: send `Authorization: Bearer <key>`.";
    InvalidApiKey = "invalid_api_key", 401, None,
        "The API key is unknown or revoked.";
    MissingScope = "missing_scope", 403, None,
        "The key lacks the scope this route needs (docs/security.md lists them).";
    ModelNotAllowed = "model_not_allowed", 403, None,
        "The key may not use this model or route.";
    HostNotAllowed = "host_not_allowed", 403, None,
        "The `Host` header is not a name this server answers to (`[server] allowed_hosts`).";
    OriginNotAllowed = "origin_not_allowed", 403, None,
        "A browser page from a foreign `Origin` tried to change something (`[server] allowed_origins`).";
    NotSignedIn = "not_signed_in", 401, None,
        "A console request without a live session cookie: sign in at /console.";
    InvalidCredentials = "invalid_credentials", 401, None,
        "The console account name or password is wrong.";
    CsrfRejected = "csrf_rejected", 403, None,
        "A console request that changes something lacks the session's `X-CSRF-Token` header, or carries another session's.";
    RoleForbidden = "role_forbidden", 403, None,
        "The console account's role may not do this (admin, support, viewer: docs/console.md).";
    // What is asked for.
    RouteNotFound = "route_not_found", 404, None,
        "No such route; /openapi.json lists them.";
    ModelNotFound = "model_not_found", 404, None,
        "No model or route alias of that name is registered.";
    ItemNotFound = "item_not_found", 404, None,
        "No item of that id is in the catalogue.";
    UserNotFound = "user_not_found", 404, None,
        "No user of that id is stored.";
    SessionNotFound = "session_not_found", 404, None,
        "No support session of that id is visible to this key.";
    ResponseNotFound = "response_not_found", 404, None,
        "No stored response of that id is visible to this key (never stored, deleted or expired).";
    SessionNotHandedOver = "session_not_handed_over", 409, None,
        "A human's message to a session the agent still has: a human answers only after a handoff.";
    SessionBusy = "session_busy", 409, None,
        "The session was answering another message (on this replica or another) for longer than a message waits; retry.";
    AccountNotFound = "account_not_found", 404, None,
        "No console account of that name exists.";
    PullNotFound = "pull_not_found", 404, None,
        "No pull of that id in this process (the console lists each replica's own pulls).";
    PullInProgress = "pull_in_progress", 409, None,
        "That model and revision are already being pulled; wait for the pull or cancel it.";
    // Limits.
    TooManyLoginAttempts = "too_many_login_attempts", 429, Some(AsSent),
        "Too many failed console sign-ins for this account or address; retry after `Retry-After`.";
    TooManyPulls = "too_many_pulls", 429, Some(After(10)),
        "As many model pulls as may run at once are running; start this one when one ends.";
    RateLimitExceeded = "rate_limit_exceeded", 429, Some(AsSent),
        "The key sent more requests or tokens this minute than its limit; retry after `Retry-After`.";
    BudgetExceeded = "budget_exceeded", 429, Some(AsSent),
        "The key's (or the route's) budget for the period is spent; `Retry-After` says when the period ends.";
    // Capacity.
    Overloaded = "overloaded", 503, Some(After(1)),
        "Every slot and queue place of the engine is taken, or the request waited `[llm] max_queue_wait_ms`; retry shortly.";
    EngineStopped = "engine_stopped", 503, Some(After(5)),
        "The model's engine stopped and is being restarted.";
    NoDeploymentAvailable = "no_deployment_available", 503, Some(AsSent),
        "Every deployment of the route is failing or cooling down.";
    NotTrained = "not_trained", 503, Some(After(30)),
        "No model is trained and published yet (`hearth recs train`, `hearth support train`); the schedule may publish one soon.";
    NotConfigured = "not_configured", 503, None,
        "A feature needs configuration it lacks (a policy file, a tools file); the message names the setting.";
    NoChatModel = "no_chat_model", 503, None,
        "The feature needs a chat model and none is registered or configured.";
    // Upstreams.
    UpstreamError = "upstream_error", 502, None,
        "The upstream model endpoint failed or answered something unreadable.";
    HubOffline = "hub_offline", 502, None,
        "The Hugging Face Hub is needed but `HF_HUB_OFFLINE` is set.";
    InvalidModelSpec = "invalid_model_spec", 502, None,
        "A model to pull is not written `ORG/REPO[:FILE_OR_QUANT]`.";
    HubUnauthorized = "hub_unauthorized", 502, None,
        "The Hub refused the token (gated or private repository).";
    HubNotFound = "hub_not_found", 502, None,
        "The Hub has no such repository or revision.";
    HubFileNotFound = "hub_file_not_found", 502, None,
        "The repository has no file matching the selector.";
    AmbiguousModelFile = "ambiguous_model_file", 502, None,
        "Several files of the repository match; name one.";
    UnsupportedModelRepo = "unsupported_model_repo", 502, None,
        "The repository holds neither GGUF files nor a sentence-transformers model.";
    HubUnreachable = "hub_unreachable", 502, None,
        "The Hub could not be reached.";
    HubDownloadInterrupted = "hub_download_interrupted", 502, None,
        "A download broke off; pulling again resumes it.";
    HubError = "hub_error", 502, None,
        "The Hub answered with an error status.";
    HubBadResponse = "hub_bad_response", 502, None,
        "The Hub answered something unreadable.";
    ChecksumMismatch = "checksum_mismatch", 502, None,
        "A downloaded file does not match its checksum; it was not kept.";
    DiskFull = "disk_full", 502, None,
        "The disk filled up during a download.";
    HubIoError = "hub_io_error", 502, None,
        "The HF cache could not be read or written.";
    // hearth itself.
    InvalidModel = "invalid_model", 500, None,
        "A registered model file is unreadable or unsupported.";
    EngineError = "engine_error", 500, None,
        "The inference engine failed.";
    EmbeddingError = "embedding_error", 500, None,
        "The embedding model failed.";
    TokenizerError = "tokenizer_error", 500, None,
        "The tokenizer could not encode an input.";
    IoError = "io_error", 500, None,
        "A file of the data directory could not be read or written.";
    GatewayConfig = "gateway_config", 500, None,
        "The gateway's configuration is inconsistent.";
    DatabaseError = "database_error", 500, None,
        "The database failed.";
    DatabaseUnavailable = "database_unavailable", 503, Some(After(2)),
        "The database server cannot be reached; nothing was done, retry after `Retry-After`.";
    SchemaTooNew = "schema_too_new", 500, None,
        "The database was written by a newer hearth; upgrade.";
    ArtifactError = "artifact_error", 500, None,
        "A trained artifact could not be written or loaded.";
    IndexError = "index_error", 500, None,
        "A search index failed.";
    AssistantError = "assistant_error", 500, None,
        "The shopping assistant failed.";
    InternalError = "internal_error", 500, None,
        "Anything else that went wrong inside hearth; the server log has the detail.";
}

impl ErrorCode {
    /// OpenAI's error `type` for this code's status.
    pub fn kind(self) -> &'static str {
        match self.status() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            400 | 413 | 415 | 422 => "invalid_request_error",
            429 => "rate_limit_error",
            503 => "overloaded_error",
            _ => "server_error",
        }
    }

    /// The code named `code`, if it is one.
    pub fn parse(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == code)
    }

    /// The table as Markdown (docs/errors.md's table).
    pub fn markdown_table() -> String {
        let mut out = String::from("| code | status | retry | meaning |\n|---|---|---|---|\n");
        for code in ErrorCode::ALL {
            let retry = match code.retry() {
                None => "no".to_owned(),
                Some(Retry::After(s)) => format!("after {s} s"),
                Some(Retry::AsSent) => "after `Retry-After`".to_owned(),
            };
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                code.as_str(),
                code.status(),
                retry,
                code.meaning()
            ));
        }
        out
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_snake_case_and_parses_back() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{s} is not snake_case"
            );
            assert_eq!(ErrorCode::parse(s), Some(*code));
            assert!(!code.meaning().is_empty());
        }
        assert_eq!(ErrorCode::parse("invalid_parameter"), None);
    }

    #[test]
    fn statuses_and_retries_agree() {
        for code in ErrorCode::ALL {
            let status = code.status();
            assert!((400..600).contains(&status), "{code}: {status}");
            // Only limits and capacity are worth retrying; a client error never is.
            match code.retry() {
                Some(_) => assert!(status == 429 || status == 503, "{code} retries at {status}"),
                None => assert_ne!(status, 429, "{code}: a 429 must say when to retry"),
            }
        }
        assert_eq!(ErrorCode::Overloaded.retry(), Some(Retry::After(1)));
        assert_eq!(ErrorCode::InvalidRequest.kind(), "invalid_request_error");
        assert_eq!(ErrorCode::Overloaded.kind(), "overloaded_error");
    }
}
