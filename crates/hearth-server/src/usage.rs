//! `GET /v1/usage`: spend, tokens and savings from the gateway's ledger.

use axum::extract::State;
use axum::{Extension, Json};
use hearth_core::usage_service::UsageQuery;
use hearth_gateway::ledger::UsageReport;
use hearth_gateway::{Caller, GatewayError};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::extract::ApiQuery;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// A duration back from now (`30m`, `24h`, `7d`), a UTC date (`2026-11-01`) or unix
    /// seconds.
    #[param(schema_with = since)]
    since: Option<String>,
    /// `key`, `route` (default), `model` or `deployment`.
    #[param(schema_with = group_by)]
    by: Option<String>,
    /// The price-table model savings are measured against (default: `[gateway]
    /// reference_model`): a built-in name, or one added under `[gateway.prices]`.
    #[param(min_length = 1)]
    reference: Option<String>,
}

fn since() -> utoipa::openapi::schema::Schema {
    use hearth_gateway::ledger::{SINCE_DURATION, SINCE_SECONDS};
    use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
    let string = || ObjectBuilder::new().schema_type(Type::String);
    AnyOfBuilder::new()
        .item(string().pattern(Some(SINCE_DURATION)))
        .item(string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))))
        .item(string().pattern(Some(SINCE_SECONDS)))
        .into()
}

fn group_by() -> utoipa::openapi::schema::ObjectBuilder {
    hearth_types::schema::one_of_strings(&["key", "route", "model", "deployment"])
}

/// Spend, tokens and savings from the usage ledger: requests metered by the gateway, grouped,
/// with what the same tokens would have cost on a reference proprietary model and the
/// assumptions behind the figures.
///
/// A key made with `hearth keys create` sees its own requests (its tenant's, when it has
/// one); a key with the admin scope, `[server] api_keys` and an open server see everyone's.
#[utoipa::path(get, path = "/v1/usage", tag = "usage", params(UsageParams),
    responses(
        (status = 200, description = "The report: rows, total, assumptions", body = UsageReport),
        (status = 400, description = "A parameter is malformed (param names it)"),
    ),
    security(("bearer" = ["usage"])))]
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
