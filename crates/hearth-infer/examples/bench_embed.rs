//! Embedding throughput of hearth's engine, same protocol as `scripts/bench/embed_peer.py`
//! (sentence-transformers): the first N texts of banking77's train.csv (column `text`), batches
//! of 32, a fixed thread count, one warm-up pass, then the best of R timed passes over all N
//! texts. Prints one line:
//!
//! ```text
//! engine=hearth texts=512 chars=... tokens=... threads=2 batch=32 best_s=... texts_per_s=...
//! ```
//!
//! ```sh
//! cargo run --release -p hearth-infer --example bench_embed -- \
//!     [--model DIR] [--data CSV] [--n 512] [--batch 32] [--threads 2] [--repeats 5]
//! ```
//! Run it alternately with the peer in one session (see docs/benchmarks.md, "Embeddings").

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use hearth_infer::embed::{EmbedInput, EmbedOptions, EmbeddingModel};

struct Args {
    model: PathBuf,
    data: PathBuf,
    n: usize,
    batch: usize,
    threads: usize,
    repeats: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let models = std::env::var_os("HEARTH_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/hearth/test-models")
        });
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut args = Args {
        model: models.join("all-MiniLM-L6-v2"),
        data: repo.join("../shared/data/banking77/train.csv"),
        n: 512,
        batch: 32,
        threads: 2,
        repeats: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--model" => args.model = value.into(),
            "--data" => args.data = value.into(),
            "--n" => args.n = value.parse()?,
            "--batch" => args.batch = value.parse()?,
            "--threads" => args.threads = value.parse()?,
            "--repeats" => args.repeats = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

/// The `text` column of a CSV file with a header row (RFC 4180 quoting).
fn read_text_column(path: &PathBuf) -> anyhow::Result<Vec<String>> {
    let data =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut records: Vec<Vec<String>> = Vec::new();
    let (mut record, mut field) = (Vec::new(), String::new());
    let mut chars = data.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    let mut rows = records.into_iter();
    let header = rows.next().context("empty CSV")?;
    let column = header
        .iter()
        .position(|name| name == "text")
        .context("no `text` column")?;
    Ok(rows
        .filter_map(|mut row| (column < row.len()).then(|| row.swap_remove(column)))
        .collect())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let mut texts = read_text_column(&args.data)?;
    if texts.len() < args.n {
        bail!("only {} texts in {}", texts.len(), args.data.display());
    }
    texts.truncate(args.n);
    let chars: usize = texts.iter().map(|t| t.chars().count()).sum();
    let inputs: Vec<EmbedInput> = texts.into_iter().map(EmbedInput::Text).collect();

    let opts = EmbedOptions {
        threads: args.threads,
        max_batch: args.batch,
        ..EmbedOptions::default()
    };
    let model = EmbeddingModel::load_with_options(&args.model, &opts)?;

    let warm = model.embed(&inputs)?; // warm-up
    assert_eq!(warm.vectors.len(), inputs.len());
    let mut best = f64::INFINITY;
    for _ in 0..args.repeats {
        let start = Instant::now();
        let out = model.embed(&inputs)?;
        best = best.min(start.elapsed().as_secs_f64());
        assert_eq!(out.vectors.len(), inputs.len());
    }
    println!(
        "engine=hearth texts={} chars={chars} tokens={} threads={} batch={} best_s={best:.4} texts_per_s={:.1}",
        inputs.len(),
        warm.prompt_tokens,
        args.threads,
        args.batch,
        inputs.len() as f64 / best
    );
    Ok(())
}
