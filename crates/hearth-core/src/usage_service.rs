//! The usage report as every front end asks for it: which requests a caller may see, and
//! the report's window and grouping read from their text forms.

use hearth_gateway::ledger::{parse_since, GroupBy, UsageReport};
use hearth_gateway::{Caller, GatewayError, Scope};

use crate::Platform;

/// What a usage report covers, in the words a user gives (`--since 7d`, `?by=key`).
#[derive(Debug, Clone, Copy, Default)]
pub struct UsageQuery<'a> {
    /// A duration back from now (`30m`, `24h`, `7d`), a UTC date (`2026-11-01`) or unix
    /// seconds. Default: everything.
    pub since: Option<&'a str>,
    /// `key`, `route`, `model` or `deployment`. Default: `route`.
    pub by: Option<&'a str>,
    /// The price-table model savings are measured against. Default: `[gateway]
    /// reference_model`.
    pub reference: Option<&'a str>,
}

impl Platform {
    /// The usage report `caller` may see: a key made with `hearth keys create` sees its own
    /// requests (its tenant's, when it has one); a key with the admin scope, a `[server]
    /// api_keys` entry and the command line see everyone's. Reads the ledger: blocks (async
    /// callers run it on a blocking thread). Errors name the field at fault.
    pub fn usage_report(
        &self,
        caller: &Caller,
        query: UsageQuery<'_>,
    ) -> Result<UsageReport, GatewayError> {
        let invalid = |param: &str, message: String| GatewayError::InvalidRequest {
            param: param.into(),
            message,
        };
        let since = query
            .since
            .map(|s| parse_since(s, hearth_types::clock::unix_now_f64()))
            .transpose()
            .map_err(|m| invalid("since", m))?;
        let by = match query.by {
            None => GroupBy::Route,
            Some(text) => GroupBy::parse(text).ok_or_else(|| {
                invalid(
                    "by",
                    format!("'{text}': use key, route, model or deployment"),
                )
            })?,
        };
        let gateway = self.gateway();
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
        gateway.usage_report(since, only_keys.as_deref(), by, query.reference)
    }
}

/// The most days a spend view covers.
pub const MAX_SPEND_DAYS: u32 = 366;

/// One day of one group in a spend view.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpendPoint {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    #[serde(flatten)]
    pub row: hearth_gateway::ledger::DayRow,
}

/// Spend, tokens and savings over the last `days` UTC days (today included), per day and in
/// total, from the daily rollups.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpendView {
    pub days: u32,
    pub by: &'static str,
    /// The first and last day covered (`YYYY-MM-DD`, UTC).
    pub from: String,
    pub to: String,
    pub series: Vec<SpendPoint>,
    pub rows: Vec<hearth_gateway::ledger::UsageRow>,
    pub total: hearth_gateway::ledger::UsageRow,
    pub assumptions: hearth_gateway::ledger::Assumptions,
}

/// A key with its limits and what it has spent this period.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeyBudget {
    #[serde(flatten)]
    pub key: hearth_gateway::keys::KeyInfo,
    /// USD spent in the current period (from the ledger's daily rollups).
    pub spent: f64,
    /// `budget - spent` (never below 0); `None` without a budget.
    pub remaining: Option<f64>,
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
pub fn day_text(day: i64) -> String {
    let (y, m, d) = hearth_types::clock::utc_date(day * 86_400);
    format!("{y:04}-{m:02}-{d:02}")
}

impl Platform {
    /// The console's spend view: everyone's requests over the last `days` days, grouped `by`
    /// (`key`, `route`, `model`, `deployment`). Reads the daily rollups (one row per day and
    /// group), after the ledger has committed what it was handed. Blocks.
    pub fn spend_view(&self, days: u32, by: &str) -> Result<SpendView, GatewayError> {
        if !(1..=MAX_SPEND_DAYS).contains(&days) {
            return Err(GatewayError::InvalidRequest {
                param: "days".into(),
                message: format!("'{days}': from 1 to {MAX_SPEND_DAYS}"),
            });
        }
        let group = GroupBy::parse(by).ok_or_else(|| GatewayError::InvalidRequest {
            param: "by".into(),
            message: format!("'{by}': use key, route, model or deployment"),
        })?;
        let gateway = self.gateway();
        let ledger = gateway
            .ledger()
            .ok_or_else(|| GatewayError::Config("this gateway keeps no ledger".into()))?;
        ledger.flush();
        let db = ledger.database();
        let today = hearth_gateway::ledger::day_of(hearth_types::clock::unix_now_f64());
        let from = today - i64::from(days) + 1;
        let reference = &gateway.settings().reference_model;
        let cost = gateway.settings().machine_cost_per_hour;
        let report = hearth_gateway::ledger::daily_report(
            db,
            from,
            group,
            gateway.prices(),
            reference,
            cost,
        )?;
        let series =
            hearth_gateway::ledger::daily_series(db, from, group, gateway.prices(), reference)?
                .into_iter()
                .map(|row| SpendPoint {
                    day: day_text(row.day),
                    row,
                })
                .collect();
        Ok(SpendView {
            days,
            by: group.as_str(),
            from: day_text(from),
            to: day_text(today),
            series,
            rows: report.rows,
            total: report.total,
            assumptions: report.assumptions,
        })
    }

    /// The newest requests of the ledger (no text), newest first. Blocks.
    pub fn request_log(
        &self,
        limit: usize,
        before: Option<i64>,
    ) -> Result<Vec<hearth_gateway::ledger::LoggedRequest>, GatewayError> {
        let ledger = self
            .gateway()
            .ledger()
            .ok_or_else(|| GatewayError::Config("this gateway keeps no ledger".into()))?;
        ledger.flush();
        Ok(hearth_gateway::ledger::request_log(
            ledger.database(),
            limit.clamp(1, 1000),
            before,
            None,
        )?)
    }

    /// The text the audit log kept of the requests `ids` that left the machine (only with
    /// `[gateway] audit_raw_text`; empty otherwise). Blocks.
    pub fn request_texts(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::BTreeMap<i64, hearth_gateway::ledger::RequestText>, GatewayError>
    {
        let gateway = self.gateway();
        match gateway.ledger() {
            Some(ledger) if gateway.settings().audit_raw_text => Ok(
                hearth_gateway::ledger::request_texts(ledger.database(), ids)?,
            ),
            _ => Ok(Default::default()),
        }
    }

    /// Every key with its limits and this period's spend. Blocks.
    pub fn key_budgets(&self) -> Result<Vec<KeyBudget>, GatewayError> {
        let gateway = self.gateway();
        let (Some(keys), Some(ledger)) = (gateway.keys(), gateway.ledger()) else {
            return Ok(Vec::new());
        };
        ledger.flush();
        let now = hearth_types::clock::unix_now_f64();
        let mut out = Vec::new();
        for key in keys.list()? {
            let (start, _) = key.period.bounds(now);
            let spent = hearth_gateway::ledger::spent_from_day(
                ledger.database(),
                &key.name,
                hearth_gateway::ledger::day_of(start),
            )?;
            out.push(KeyBudget {
                remaining: key.budget.map(|b| (b - spent).max(0.0)),
                spent,
                key,
            });
        }
        out.sort_by(|a, b| {
            (a.key.revoked.is_some(), &a.key.name).cmp(&(b.key.revoked.is_some(), &b.key.name))
        });
        Ok(out)
    }
}
