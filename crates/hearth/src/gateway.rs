//! `hearth keys`, `hearth usage`, `hearth routes`: the gateway's keys, ledger and routes.

use anyhow::{bail, Context, Result};
use hearth_core::usage_service::UsageQuery;
use hearth_core::{Config, Platform};
use hearth_gateway::keys::{NewKey, Period, Scope};
use hearth_gateway::ledger::{audit_log, UsageRow};
use hearth_gateway::Caller;

use crate::cli::{KeysCommand, UsageCommand};

fn open(config: Config) -> Result<Platform> {
    Platform::open(config).context("opening hearth's data directory")
}

fn limit<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

pub fn keys(config: Config, command: KeysCommand) -> Result<()> {
    let platform = open(config)?;
    let store = platform
        .gateway()
        .keys()
        .context("this gateway has no key store")?;
    match command {
        KeysCommand::Create {
            name,
            scopes,
            tenant,
            routes,
            rpm,
            tpm,
            budget,
            period,
            json,
        } => {
            let Some(period) = Period::parse(&period) else {
                bail!("--period {period}: use day, month or total");
            };
            let scopes = scopes
                .iter()
                .map(|s| {
                    Scope::parse(s)
                        .with_context(|| format!("--scope {s}: unknown scope; {}", Scope::list()))
                })
                .collect::<Result<Vec<_>>>()?;
            let (secret, info) = store.create(NewKey {
                name,
                scopes,
                tenant,
                routes,
                requests_per_minute: rpm,
                tokens_per_minute: tpm,
                budget,
                period: Some(period),
            })?;
            if json {
                let mut value = serde_json::to_value(&info)?;
                value["secret"] = secret.into();
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                let scopes: Vec<_> = info.scopes.iter().map(|s| s.as_str()).collect();
                println!(
                    "created key '{}' (scopes: {}); its secret (shown only now):",
                    info.name,
                    scopes.join(",")
                );
                println!("{secret}");
                println!("send it as 'Authorization: Bearer <secret>'");
            }
        }
        KeysCommand::List { json } => {
            let keys = store.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else if keys.is_empty() {
                println!("no keys: `hearth keys create NAME` makes one");
            } else {
                println!(
                    "{:<20} {:<30} {:<12} {:<24} {:>8} {:>10} {:>12} {:<7} status",
                    "NAME", "SCOPES", "TENANT", "MODELS", "RPM", "TPM", "BUDGET $", "PERIOD"
                );
                for k in keys {
                    let scopes: Vec<_> = k.scopes.iter().map(|s| s.as_str()).collect();
                    println!(
                        "{:<20} {:<30} {:<12} {:<24} {:>8} {:>10} {:>12} {:<7} {}",
                        k.name,
                        scopes.join(","),
                        k.tenant.as_deref().unwrap_or("-"),
                        if k.routes.is_empty() {
                            "(all)".to_owned()
                        } else {
                            k.routes.join(",")
                        },
                        limit(k.requests_per_minute),
                        limit(k.tokens_per_minute),
                        limit(k.budget.map(|b| format!("{b:.2}"))),
                        k.period.as_str(),
                        if k.revoked.is_some() {
                            "revoked"
                        } else {
                            "active"
                        },
                    );
                }
            }
        }
        KeysCommand::Revoke { name } => {
            if !store.revoke(&name)? {
                bail!("no active key named '{name}' (`hearth keys list`)");
            }
            println!("revoked '{name}'; servers refuse it within 2 seconds");
        }
    }
    Ok(())
}

fn money(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.2}")
    } else if v == 0.0 || v.abs() >= 0.01 {
        format!("{v:.4}")
    } else {
        format!("{v:.7}")
    }
}

fn print_row(r: &UsageRow) {
    println!(
        "{:<28} {:>8} {:>6} {:>12} {:>12} {:>11} {:>11} {:>9}",
        r.group,
        r.requests,
        r.errors,
        r.prompt_tokens,
        r.completion_tokens,
        money(r.cost),
        money(r.reference_cost),
        r.savings_percent
            .map(|p| format!("{p:.1} %"))
            .unwrap_or_else(|| "-".into()),
    );
}

pub fn usage(config: Config, command: UsageCommand) -> Result<()> {
    let platform = open(config)?;
    let gateway = platform.gateway();
    match command {
        UsageCommand::Report {
            since,
            by,
            reference,
            json,
        } => {
            let asked = UsageQuery {
                since: since.as_deref(),
                by: Some(&by),
                reference: reference.as_deref(),
            };
            let report = platform.usage_report(&Caller::default(), asked)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            let a = &report.assumptions;
            println!(
                "{:<28} {:>8} {:>6} {:>12} {:>12} {:>11} {:>11} {:>9}",
                by.as_str().to_uppercase(),
                "REQUESTS",
                "ERRORS",
                "PROMPT TOK",
                "OUTPUT TOK",
                "SPENT $",
                format!("{} $", a.reference_model),
                "SAVED"
            );
            for row in &report.rows {
                print_row(row);
            }
            print_row(&report.total);
            println!();
            println!(
                "Savings: the same tokens at {} (${}/1M input, ${}/1M output; {}), minus what was spent.",
                a.reference_model, a.reference_input_price, a.reference_output_price, a.reference_price_source
            );
            println!("Local cost: {}.", a.local_cost_method);
            println!("Upstream cost: {}.", a.upstream_cost_method);
            if a.machine_cost_per_hour == 0.0 && report.total.local_requests > 0 {
                println!(
                    "Note: [gateway] machine_cost_per_hour is 0, so local work counts as free; \
                     set it to what this machine costs to make the savings honest."
                );
            }
            if report.total.unpriced_requests > 0 {
                println!(
                    "Note: {} requests had no price (their cost counts as 0).",
                    report.total.unpriced_requests
                );
            }
        }
        UsageCommand::Prices { json } => {
            let prices = gateway.prices();
            let rows: Vec<_> = prices
                .names()
                .map(|n| {
                    (
                        n.to_owned(),
                        prices.get(n).expect("listed"),
                        prices.source(n),
                    )
                })
                .collect();
            if json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(n, p, s)| serde_json::json!({"model": n, "input": p.input, "output": p.output, "source": s}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<24} {:>10} {:>10}  source (USD per 1M tokens)",
                    "MODEL", "INPUT", "OUTPUT"
                );
                for (n, p, s) in rows {
                    println!("{n:<24} {:>10.3} {:>10.3}  {s}", p.input, p.output);
                }
            }
        }
        UsageCommand::Audit { limit, json } => {
            let ledger = gateway.ledger().context("this gateway keeps no ledger")?;
            let records = audit_log(ledger.database(), limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else if records.is_empty() {
                println!("no upstream calls yet");
            } else {
                for r in records {
                    let redactions: Vec<String> = r
                        .redactions
                        .iter()
                        .map(|(k, n)| format!("{k}={n}"))
                        .collect();
                    println!(
                        "{:.0} {} → {} [{}] {} tokens {}+{} redacted: {}",
                        r.at,
                        r.route,
                        r.deployment,
                        r.privacy,
                        r.outcome,
                        r.prompt_tokens,
                        r.completion_tokens,
                        if redactions.is_empty() {
                            "none".into()
                        } else {
                            redactions.join(" ")
                        }
                    );
                }
            }
        }
    }
    Ok(())
}

pub fn routes(config: Config, json: bool) -> Result<()> {
    let platform = open(config)?;
    let routes = platform.gateway().routes();
    if json {
        let list: Vec<_> = routes
            .iter()
            .map(|(alias, privacy, deployments)| {
                serde_json::json!({"alias": alias, "privacy": privacy, "deployments": deployments})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if routes.is_empty() {
        println!(
            "no routes: every model name goes to the local model of that name \
             (declare [[gateway.routes]] in hearth.toml, see docs/hearth.toml)"
        );
    } else {
        for (alias, privacy, deployments) in routes {
            println!("{alias:<24} {privacy:<10} {}", deployments.join(" → "));
        }
    }
    Ok(())
}
