//! `GET /v1/usage`: spend, tokens and savings from the gateway's ledger.

use axum::extract::State;
use axum::{Extension, Json};
use hearth_gateway::ledger::{parse_since, GroupBy, UsageReport};
use hearth_gateway::GatewayError;
use hearth_gateway::{Caller, Scope};
use serde::Deserialize;

use crate::extract::ApiQuery;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// A duration back from now (`24h`, `7d`), a date (`2026-11-01`) or unix seconds.
    since: Option<String>,
    /// `key`, `route`, `model` or `deployment` (default `route`).
    by: Option<String>,
    /// The price-table model savings are measured against (default: `[gateway]
    /// reference_model`).
    reference: Option<String>,
}

/// A key made with `hearth keys create` sees its own requests (its tenant's, when it has
/// one); a key with the admin scope, `[server] api_keys` and an open server see everyone's.
pub async fn report(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Json<UsageReport>, ApiError> {
    let now = hearth_types::clock::unix_now_f64();
    let since = query
        .since
        .as_deref()
        .map(|s| {
            parse_since(s, now).map_err(|m| GatewayError::InvalidRequest {
                param: "since".into(),
                message: m,
            })
        })
        .transpose()?;
    let by = match query.by.as_deref() {
        None => GroupBy::Route,
        Some(text) => GroupBy::parse(text).ok_or_else(|| GatewayError::InvalidRequest {
            param: "by".into(),
            message: format!("'{text}': use key, route, model or deployment"),
        })?,
    };
    let platform = state.platform.clone();
    let report = tokio::task::spawn_blocking(move || {
        let gateway = platform.gateway();
        let only_keys = match &caller.key {
            Some(key) if !key.has_scope(Scope::Admin) => Some(match &key.tenant {
                None => vec![key.name.clone()],
                Some(tenant) => gateway
                    .keys()
                    .map(|keys| keys.list())
                    .transpose()?
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|k| k.tenant.as_ref() == Some(tenant))
                    .map(|k| k.name)
                    .collect(),
            }),
            _ => None,
        };
        gateway.usage_report(since, only_keys.as_deref(), by, query.reference.as_deref())
    })
    .await
    .map_err(|e| GatewayError::Config(format!("usage report failed: {e}")))??;
    Ok(Json(report))
}
