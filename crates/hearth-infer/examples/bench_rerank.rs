//! Cross-encoder throughput of hearth's encoder engine, same protocol as
//! `scripts/bench/rerank_peer.py` (sentence-transformers CrossEncoder): the (query, document)
//! pairs of a JSONL file, batches of 32, a fixed thread count, one warm-up pass, then R timed
//! passes over all pairs. Prints one JSON line:
//!
//! ```text
//! {"engine":"hearth","pairs":512,"tokens":...,"seconds":[...],"pairs_per_s":...}
//! ```
//!
//! ```sh
//! cargo run --release --example bench_rerank -- --model DIR --pairs PAIRS.jsonl \
//!     [--batch-size 32] [--threads 2] [--rounds 5]
//! ```
//! `scripts/bench/rerank.sh` runs it alternately with the peer in one session.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use hearth_infer::embed::{EmbedInput, EmbedOptions, EmbeddingModel};

fn main() -> anyhow::Result<()> {
    let (mut model, mut pairs, mut batch, mut threads, mut rounds) =
        (None::<PathBuf>, None::<PathBuf>, 32, 2, 5);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--model" => model = Some(value.into()),
            "--pairs" => pairs = Some(value.into()),
            "--batch-size" => batch = value.parse()?,
            "--threads" => threads = value.parse()?,
            "--rounds" => rounds = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    let model = model.context("--model DIR is required")?;
    let pairs = pairs.context("--pairs FILE is required")?;
    let text =
        std::fs::read_to_string(&pairs).with_context(|| format!("reading {}", pairs.display()))?;
    let mut inputs = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let row: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}", pairs.display(), i + 1))?;
        let field = |name: &str| {
            row[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("{}:{}: no {name}", pairs.display(), i + 1))
        };
        inputs.push(EmbedInput::Pair(field("query")?, field("document")?));
    }
    let opts = EmbedOptions {
        threads,
        max_batch: batch,
        ..EmbedOptions::default()
    };
    let model = EmbeddingModel::load_with_options(&model, &opts)?;
    if !model.is_cross_encoder() {
        bail!("not a cross-encoder");
    }
    let warm = model.embed(&inputs)?;
    let mut seconds = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let out = model.embed(&inputs)?;
        seconds.push(start.elapsed().as_secs_f64());
        assert_eq!(out.vectors.len(), inputs.len());
    }
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "{}",
        serde_json::json!({
            "engine": "hearth",
            "pairs": inputs.len(),
            "tokens": warm.prompt_tokens,
            "seconds": seconds.iter().map(|s| (s * 1e4).round() / 1e4).collect::<Vec<_>>(),
            "pairs_per_s": (inputs.len() as f64 / median * 10.0).round() / 10.0,
        })
    );
    Ok(())
}
