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
