//! `hearth bench spend`: the console's spend view on a large ledger, from the daily rollups
//! beside the same figures computed from every request row.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use hearth_core::{Config, Platform};
use hearth_gateway::ledger::{self, GroupBy, UsageRecord};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::BenchSpendArgs;

/// A small, seeded generator: the same ledger on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const KEYS: usize = 40;
/// (route, deployment, model, local, USD per 1M input, per 1M output).
const DEPLOYMENTS: [(&str, &str, &str, bool, f64, f64); 6] = [
    ("chat", "local/qwen2.5-7b", "qwen2.5-7b", true, 0.0, 0.0),
    ("chat", "vllm/qwen2.5-72b", "qwen2.5-72b", false, 0.4, 1.2),
    ("support", "local/qwen2.5-7b", "qwen2.5-7b", true, 0.0, 0.0),
    ("embed", "local/minilm", "minilm", true, 0.0, 0.0),
    (
        "reasoning",
        "deepseek/deepseek-chat",
        "deepseek-chat",
        false,
        0.27,
        1.1,
    ),
    (
        "assistant",
        "local/qwen2.5-7b",
        "qwen2.5-7b",
        true,
        0.0,
        0.0,
    ),
];

fn record(rng: &mut Rng, from: f64, span: f64) -> UsageRecord {
    let (route, deployment, model, local, input, output) =
        DEPLOYMENTS[rng.below(DEPLOYMENTS.len() as u64) as usize];
    let prompt = 50 + rng.below(2000);
    let completion = if route == "embed" {
        0
    } else {
        10 + rng.below(600)
    };
    let ok = rng.below(100) != 0;
    let duration = 50.0 + rng.unit() * 3000.0;
    let busy = if local { duration * 0.8 } else { 0.0 };
    let cost = if local {
        busy / 3_600_000.0 * 1.2
    } else {
        (prompt as f64 * input + completion as f64 * output) / 1e6
    };
    UsageRecord {
        at: from + rng.unit() * span,
        api_key: Some(format!("team-{:02}", rng.below(KEYS as u64))),
        route: route.into(),
        deployment: deployment.into(),
        model: model.into(),
        local,
        status: if ok { "ok" } else { "error" }.into(),
        prompt_tokens: prompt,
        completion_tokens: completion,
        ttft_ms: ok.then(|| 20.0 + rng.unit() * 400.0),
        duration_ms: duration,
        busy_ms: busy,
        cost,
        priced: true,
        fallbacks: 0,
    }
}

/// p50 and p99 (nearest rank) in milliseconds, and the run count.
fn percentiles(mut ms: Vec<f64>) -> (f64, f64, usize) {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    (at(0.5), at(0.99), ms.len())
}

fn time(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64, usize)> {
    f()?; // warm the page cache and prepared statements
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        f()?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(percentiles(ms))
}

pub fn run(args: BenchSpendArgs) -> Result<()> {
    let temp;
    let dir = match &args.into {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    if !args.no_fill
        && dir.exists()
        && std::fs::read_dir(&dir)?.next().is_some()
        && args.into.is_some()
    {
        bail!(
            "{} is not empty: give a fresh directory, or --no-fill to time a ledger already there",
            dir.display()
        );
    }
    let config = Config {
        data_dir: dir.clone(),
        ..Default::default()
    };
    let platform = Platform::open(config).context("opening the benchmark's data directory")?;
    let db = platform
        .gateway()
        .ledger()
        .context("the gateway keeps no ledger")?
        .database()
        .clone();
    let now = hearth_types::clock::unix_now_f64();
    let span = f64::from(args.days) * 86_400.0;
    if !args.no_fill {
        let bar = ProgressBar::new(args.rows).with_style(
            ProgressStyle::with_template(
                "filling the ledger {bar:40} {pos}/{len} requests ({per_sec}, {eta} left)",
            )
            .expect("a valid template"),
        );
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let started = Instant::now();
        let mut left = args.rows;
        while left > 0 {
            let n = left.min(20_000);
            let batch: Vec<UsageRecord> =
                (0..n).map(|_| record(&mut rng, now - span, span)).collect();
            ledger::write_records(&db, batch)?;
            left -= n;
            bar.inc(n);
        }
        bar.finish_and_clear();
        println!(
            "filled {} requests over {} days in {:.0} s ({:.0} rows/s, rollups included)",
            args.rows,
            args.days,
            started.elapsed().as_secs_f64(),
            args.rows as f64 / started.elapsed().as_secs_f64()
        );
    }
    let gateway = platform.gateway();
    let prices = gateway.prices();
    let reference = gateway.settings().reference_model.clone();
    let cost = gateway.settings().machine_cost_per_hour;
    let today = ledger::day_of(hearth_types::clock::unix_now_f64());
    let slow = (args.repeat / 3).max(3);
    println!(
        "| view | from the rollups p50 / p99 (ms) | from every row p50 / p99 (ms) | ratio (p50) |"
    );
    println!("|---|---|---|---|");
    for (days, by) in [
        (365u32, "route"),
        (30, "key"),
        (7, "model"),
        (1, "deployment"),
    ] {
        let group = GroupBy::parse(by).expect("a known grouping");
        let from = today - i64::from(days) + 1;
        let rolled = time(args.repeat, || {
            let view = platform.spend_view(days, by)?;
            std::hint::black_box(serde_json::to_vec(&view)?);
            Ok(())
        })?;
        let scanned = time(slow, || {
            let report = ledger::report(
                &db,
                Some(from as f64 * 86_400.0),
                None,
                group,
                prices,
                &reference,
                cost,
            )?;
            let series = ledger::daily_series_from_rows(&db, from, group, prices, &reference)?;
            std::hint::black_box((serde_json::to_vec(&report)?, series.len()));
            Ok(())
        })?;
        println!(
            "| last {days} days by {by} | {:.2} / {:.2} ({} runs) | {:.1} / {:.1} ({} runs) | {:.0}× |",
            rolled.0,
            rolled.1,
            rolled.2,
            scanned.0,
            scanned.1,
            scanned.2,
            scanned.0 / rolled.0
        );
    }
    Ok(())
}
