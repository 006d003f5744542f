//! `GET /v1/usage`: spend, tokens and savings from the gateway's ledger.

use axum::extract::State;
use axum::{Extension, Json};
use hearth_core::usage_service::UsageQuery;
use hearth_gateway::ledger::UsageReport;
use hearth_gateway::{Caller, GatewayError};
use serde::Deserialize;

use crate::extract::ApiQuery;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
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
    ApiQuery(query): ApiQuery<UsageParams>,
) -> Result<Json<UsageReport>, ApiError> {
    let platform = state.platform.clone();
    let report = tokio::task::spawn_blocking(move || {
        let asked = UsageQuery {
            since: query.since.as_deref(),
            by: query.by.as_deref(),
            reference: query.reference.as_deref(),
        };
        platform.usage_report(&caller, asked)
    })
    .await
    .map_err(|e| GatewayError::Config(format!("usage report failed: {e}")))??;
    Ok(Json(report))
}
