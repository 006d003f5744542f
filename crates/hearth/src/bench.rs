//! `hearth bench`: end-to-end figures for docs/benchmarks.md. Peers (llama.cpp's llama-bench,
//! llama-batched-bench, llama-server) are run beside these by scripts/bench/*.sh.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use hearth_infer::llm::{
    GenerateRequest, GenerationSummary, LlmHandle, LlmOptions, SamplingParams,
};
use serde_json::json;

use crate::cli::{
    BenchCommand, BenchEventsArgs, BenchGatewayArgs, BenchHttpArgs, BenchIndexArgs, BenchLlmArgs,
    BenchPrefixArgs, BenchServeArgs,
};

pub async fn run(command: BenchCommand, threads: Option<usize>) -> Result<()> {
    match command {
        BenchCommand::Llm(args) => llm(args, threads).await,
        BenchCommand::Prefix(args) => prefix(args, threads).await,
        BenchCommand::Serve(args) => serve(args).await,
        BenchCommand::Http(args) => http(args).await,
        BenchCommand::Events(args) => events(args).await,
        BenchCommand::Gateway(args) => gateway(args).await,
        BenchCommand::Upstream { listen } => {
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            println!("http://{}/v1", listener.local_addr()?);
            axum::serve(listener, fast_upstream()).await?;
            Ok(())
        }
        BenchCommand::Index(args) => tokio::task::block_in_place(|| index(args)),
        BenchCommand::Spend(args) => tokio::task::block_in_place(|| crate::bench_spend::run(args)),
    }
}

fn engine(path: &std::path::Path, options: LlmOptions) -> Result<LlmHandle> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    LlmHandle::spawn(&name, path, options).with_context(|| format!("loading {}", path.display()))
}

/// A prompt of exactly `n` tokens from real prose, starting with a distinct word so that no
/// two prompts share a cached prefix.
/// Distinct first words, so prompts of different repetitions share no cached prefix.
const VARIANTS: [&str; 10] = [
    "Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India", "Juliet",
];

fn prompt_tokens(engine: &LlmHandle, n: usize, variant: usize) -> Vec<u32> {
    const PROSE: &str = "The history of the city begins with a small market by the river, where \
        farmers traded grain, wool and salt. Over the centuries the market grew into a town with \
        walls, a cathedral and a university, and merchants from distant ports arrived with silk, \
        spices and news of the world. ";
    let mut text = format!("{} {variant}. ", VARIANTS[variant % VARIANTS.len()]);
    while engine.tokenize(&text, true).len() < n {
        text.push_str(PROSE);
    }
    let mut tokens = engine.tokenize(&text, true);
    tokens.truncate(n);
    tokens
}

async fn generate(
    engine: &LlmHandle,
    prompt: Vec<u32>,
    max_tokens: u32,
) -> Result<GenerationSummary> {
    let params = SamplingParams {
        max_tokens: Some(max_tokens),
        temperature: 0.0,
        ignore_eos: true,
        ..Default::default()
    };
    let (_, summary) = engine
        .generate(GenerateRequest {
            prompt,
            params,
            constraint: None,
            ..Default::default()
        })?
        .collect()
        .await?;
    Ok(summary)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Single-stream prompt processing (pp) and token generation (tg) rates, as llama-bench
/// reports them: pp = prompt tokens / prefill time, tg = generated tokens / decode time.
async fn llm(args: BenchLlmArgs, threads: Option<usize>) -> Result<()> {
    let options = LlmOptions {
        threads: threads.unwrap_or_else(hearth_infer::available_cores),
        context_length: (args.prompt_tokens + args.gen_tokens + 16) as u32,
        max_sequences: args.max_sequences,
        batch_size: args.batch_size,
        ..Default::default()
    };
    let engine = engine(&args.model, options)?;
    // Warm-up (page in the weights).
    generate(&engine, prompt_tokens(&engine, 32, 99), 8).await?;
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    for rep in 0..args.repetitions {
        let summary = generate(&engine, prompt_tokens(&engine, args.prompt_tokens, rep), 1).await?;
        // Prompts differ from their second token on; only a BOS token may be shared.
        if summary.cached_prompt_tokens > 1 {
            bail!("prompt {rep} hit the prefix cache; the pp figure would be wrong");
        }
        let computed = (args.prompt_tokens - summary.cached_prompt_tokens) as f64;
        pp.push(computed / (summary.time_to_first_token - summary.queued).as_secs_f64());
        // tg: as llama-bench's tg, from a one-token prompt.
        let bos = engine.tokenize("", true);
        let prompt = if bos.is_empty() {
            prompt_tokens(&engine, 1, rep)
        } else {
            bos
        };
        let summary = generate(&engine, prompt, args.gen_tokens as u32 + 1).await?;
        let decode = summary.total - summary.time_to_first_token;
        tg.push((summary.completion_tokens - 1) as f64 / decode.as_secs_f64());
    }
    let result = json!({
        "model": args.model.display().to_string(),
        "threads": threads.unwrap_or_else(hearth_infer::available_cores),
        "pp_tokens": args.prompt_tokens, "pp_tokens_per_second": median(pp.clone()), "pp_runs": pp,
        "tg_tokens": args.gen_tokens, "tg_tokens_per_second": median(tg.clone()), "tg_runs": tg,
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

/// Time to first token for a request whose long system prompt is cached, against cold.
async fn prefix(args: BenchPrefixArgs, threads: Option<usize>) -> Result<()> {
    let options = LlmOptions {
        threads: threads.unwrap_or_else(hearth_infer::available_cores),
        context_length: 4096,
        ..Default::default()
    };
    let engine = engine(&args.model, options)?;
    generate(&engine, prompt_tokens(&engine, 32, 98), 4).await?;
    let file = match &args.system_file {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut system_tokens = args.system_tokens;
    for rep in 0..args.repetitions {
        // Each repetition's prompt starts differently, so its first request is cold.
        let system = match &file {
            Some(text) => {
                engine.tokenize(&format!("{}\n{text}", VARIANTS[rep % VARIANTS.len()]), true)
            }
            None => prompt_tokens(&engine, args.system_tokens, rep),
        };
        system_tokens = system.len();
        let question = |q: &str| {
            let mut p = system.clone();
            p.extend(engine.tokenize(q, false));
            p
        };
        let first = generate(&engine, question(" Where is my order?"), 1).await?;
        if first.cached_prompt_tokens > 1 {
            bail!("the cold request hit the cache");
        }
        cold.push(first.time_to_first_token.as_secs_f64());
        let second = generate(&engine, question(" Can I return a lamp?"), 1).await?;
        if second.cached_prompt_tokens < system_tokens {
            bail!(
                "the warm request reused only {} tokens",
                second.cached_prompt_tokens
            );
        }
        warm.push(second.time_to_first_token.as_secs_f64());
    }
    let (c, w) = (median(cold.clone()), median(warm.clone()));
    let result = json!({
        "model": args.model.display().to_string(),
        "system_prompt_tokens": system_tokens,
        "system_file": args.system_file.as_ref().map(|p| p.display().to_string()),
        "ttft_cold_seconds": c, "ttft_cached_seconds": w, "speedup": c / w,
        "cold_runs": cold, "cached_runs": warm,
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

struct StreamResult {
    tokens: u64,
    ttft: Duration,
}

async fn one_stream(
    client: &reqwest::Client,
    args: &BenchServeArgs,
    client_no: usize,
    round: usize,
) -> Result<StreamResult> {
    let body = json!({
        "model": args.model,
        "messages": [{"role": "user", "content": format!("Client {client_no}, round {round}: write a long story about a lighthouse keeper.")}],
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "ignore_eos": true,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let mut request = client
        .post(format!(
            "{}/v1/chat/completions",
            args.url.trim_end_matches('/')
        ))
        .json(&body);
    if let Some(key) = &args.api_key {
        request = request.bearer_auth(key);
    }
    let started = Instant::now();
    let response = request.send().await?.error_for_status()?;
    let mut stream = response.bytes_stream();
    let mut buffer = Vec::new();
    let mut chunks = 0u64;
    let mut usage = None;
    let mut ttft = None;
    while let Some(bytes) = stream.next().await {
        buffer.extend_from_slice(&bytes?);
        while let Some(pos) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(data)?;
            if let Some(u) = value
                .get("usage")
                .and_then(|u| u.get("completion_tokens"))
                .and_then(|c| c.as_u64())
            {
                usage = Some(u);
            }
            let has_content = value["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty());
            if has_content {
                chunks += 1;
                ttft.get_or_insert_with(|| started.elapsed());
            }
        }
    }
    Ok(StreamResult {
        tokens: usage.unwrap_or(chunks),
        ttft: ttft.unwrap_or_else(|| started.elapsed()),
    })
}

/// Aggregate generation throughput of `clients` concurrent streaming clients against any
/// OpenAI-compatible server (hearth serve, llama-server …).
async fn serve(args: BenchServeArgs) -> Result<()> {
    // No connection reuse: a server closing an idle keep-alive connection must not fail a run.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .pool_max_idle_per_host(0)
        .build()?;
    one_stream(&client, &args, 999, 999)
        .await
        .context("warm-up request")?;
    let mut rates = Vec::new();
    let mut ttfts = Vec::new();
    for round in 0..args.rounds {
        let started = Instant::now();
        let results = futures::future::join_all(
            (0..args.clients).map(|c| one_stream(&client, &args, c, round)),
        )
        .await;
        let elapsed = started.elapsed().as_secs_f64();
        let mut tokens = 0;
        for r in results {
            let r = r?;
            tokens += r.tokens;
            ttfts.push(r.ttft.as_secs_f64());
        }
        rates.push(tokens as f64 / elapsed);
    }
    let result = json!({
        "url": args.url, "model": args.model, "clients": args.clients, "max_tokens": args.max_tokens,
        "aggregate_tokens_per_second": median(rates.clone()), "rounds": rates,
        "median_ttft_seconds": median(ttfts),
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

/// Open-loop latency at a fixed rate: one request every 1/rps seconds, whether or not earlier
/// ones have answered, each timed from when it was sent; how late sends were is reported
/// beside it, so a generator that could not hold the rate is visible.
async fn http(args: BenchHttpArgs) -> Result<()> {
    if args.rps == 0 || args.seconds == 0 || args.users == 0 {
        bail!("--rps, --seconds and --users must be at least 1");
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url_for = |n: u64| {
        let user = 1 + (n.wrapping_mul(2_654_435_761) % args.users as u64);
        format!(
            "{}{}",
            args.url,
            args.path.replace("{user}", &user.to_string())
        )
    };
    // Warm-up: connections, the model load, caches.
    for n in 0..50 {
        client.get(url_for(n)).send().await?.error_for_status()?;
    }
    let total = args.rps as u64 * args.seconds as u64;
    let period = Duration::from_secs_f64(1.0 / args.rps as f64);
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = started + period * n as u32;
        tokio::time::sleep_until(due).await;
        let client = client.clone();
        let url = url_for(n + 1000);
        tasks.push(tokio::spawn(async move {
            let sent = tokio::time::Instant::now();
            let ok = match client.get(url).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (sent.elapsed().as_secs_f64(), (sent - due).as_secs_f64(), ok)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut lateness = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for t in tasks {
        let (latency, late, ok) = t.await?;
        lateness.push(late * 1000.0);
        if ok {
            latencies.push(latency);
        } else {
            errors += 1;
        }
    }
    lateness.sort_by(|a, b| a.total_cmp(b));
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| percentile(&latencies, p);
    let result = json!({
        "url": args.url, "path": args.path, "target_rps": args.rps,
        "achieved_rps": latencies.len() as f64 / elapsed, "requests": total, "errors": errors,
        "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": pct(1.0),
        // How late the generator sent requests (tokio's timer has 1 ms granularity and the
        // generator shares the machine): a large figure means the rate was not really held.
        "send_lateness_p99_ms": lateness[(lateness.len() * 99 / 100).min(lateness.len() - 1)],
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

async fn events(args: BenchEventsArgs) -> Result<()> {
    if args.batch == 0 || args.concurrency == 0 || args.seconds == 0 {
        bail!("--batch, --concurrency and --seconds must be at least 1");
    }
    if args.users == 0 || args.items == 0 {
        bail!("--users and --items must be at least 1");
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let url = format!("{}/v1/events", args.url.trim_end_matches('/'));
    // Ids unique to this run, so that no event is one the store already holds.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let body = move |client_n: u32, batch_n: u64| {
        let events: Vec<_> = (0..args.batch as u64)
            .map(|i| {
                let n = (batch_n * args.batch as u64 + i).wrapping_mul(2_654_435_761);
                json!({
                    "id": format!("bench-{run}-{client_n}-{batch_n}-{i}"),
                    "user": (1 + n % args.users as u64).to_string(),
                    "item": (1 + (n / 7) % args.items as u64).to_string(),
                    "type": "view",
                })
            })
            .collect();
        json!({ "events": events })
    };
    let key = args.key.clone();
    let send = move |client: reqwest::Client, body: serde_json::Value| {
        let mut request = client.post(&url).json(&body);
        if let Some(key) = &key {
            request = request.bearer_auth(key);
        }
        async move {
            match request.send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!(
                    "{}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    // One batch first: a server that refuses them says why before any figure is made.
    if let Err(e) = send(client.clone(), body(u32::MAX, 0)).await {
        bail!("{}/v1/events does not take events: {e}", args.url);
    }
    let deadline = Instant::now() + Duration::from_secs(args.seconds as u64);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|c| {
            let (client, body, send) = (client.clone(), body, send.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0u64);
                let mut n = 0;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    match send(client.clone(), body(c, n)).await {
                        Ok(()) => latencies.push(sent.elapsed().as_secs_f64()),
                        Err(_) => errors += 1,
                    }
                    n += 1;
                }
                (latencies, errors)
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for w in workers {
        let (l, e) = w.await?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let stored = latencies.len() as f64 * args.batch as f64;
    let result = json!({
        "url": args.url, "batch": args.batch, "concurrency": args.concurrency,
        "seconds": elapsed, "batches": latencies.len(), "errors": errors,
        "events_per_second": stored / elapsed,
        "batch_p50_ms": percentile(&latencies, 0.50), "batch_p99_ms": percentile(&latencies, 0.99),
        "batch_max_ms": percentile(&latencies, 1.0),
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

/// Standard normal numbers from a seeded xorshift generator (Box–Muller).
fn gaussian(count: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..count)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

fn index(args: BenchIndexArgs) -> Result<()> {
    use hearth_index::{HnswOptions, Metric, VectorIndex, VectorOptions};
    if args.n == 0 || args.dim == 0 || args.queries == 0 || args.k == 0 {
        bail!("--n, --dim, --queries and --k must be at least 1");
    }
    let draw = |rows: usize, seed: u64| -> Vec<f32> {
        let mut v = gaussian(rows * args.dim, seed);
        if args.clusters > 0 {
            let centres = gaussian(args.clusters * args.dim, args.seed + 7);
            for (i, row) in v.chunks_exact_mut(args.dim).enumerate() {
                let c = (i.wrapping_mul(2_654_435_761) ^ seed as usize) % args.clusters;
                let centre = &centres[c * args.dim..(c + 1) * args.dim];
                for (x, m) in row.iter_mut().zip(centre) {
                    *x = m + 0.5 * *x;
                }
            }
        }
        v
    };
    let data = draw(args.n, args.seed);
    let queries = draw(args.queries, args.seed + 1);
    let options = VectorOptions {
        metric: Metric::Cosine,
        exact_below: 0,
        hnsw: HnswOptions {
            m: args.m,
            ef_construction: args.ef_construction,
            ef_search: args.k,
        },
    };
    let bar = indicatif::ProgressBar::new(args.n as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:12} [{bar:30}] {pos}/{len} {elapsed} (eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message("linking");
    let started = Instant::now();
    let mut index = VectorIndex::build(args.dim, data, &options, &|done| {
        bar.set_position(done as u64)
    })?;
    let build_s = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let queries: Vec<&[f32]> = queries.chunks_exact(args.dim).collect();
    let mut exact_times = Vec::with_capacity(queries.len());
    let truth: Vec<Vec<usize>> = queries
        .iter()
        .map(|q| {
            let t = Instant::now();
            let found = index
                .exact(q, args.k, None)
                .map(|r| r.iter().map(|x| x.0).collect());
            exact_times.push(t.elapsed().as_secs_f64());
            found
        })
        .collect::<Result<_, _>>()?;
    let exact_ms = exact_times.iter().sum::<f64>() / exact_times.len() as f64 * 1000.0;
    let mut rows = Vec::new();
    for &ef in &args.ef {
        index.set_ef_search(ef);
        let mut times = Vec::with_capacity(queries.len());
        let mut hits = 0;
        for (q, truth) in queries.iter().zip(&truth) {
            let t = Instant::now();
            let found = index.search(q, args.k, None)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            hits += found.iter().filter(|r| truth.contains(&r.0)).count();
        }
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        times.sort_by(|a, b| a.total_cmp(b));
        rows.push(json!({
            "ef_search": ef,
            "recall": hits as f64 / (queries.len() * args.k) as f64,
            "mean_ms": mean,
            "p99_ms": times[(times.len() * 99 / 100).min(times.len() - 1)],
            "speedup_vs_exact": exact_ms / mean,
        }));
    }
    let result = json!({
        "n": args.n, "dim": args.dim, "queries": args.queries, "k": args.k, "m": args.m,
        "ef_construction": args.ef_construction, "metric": "cosine",
        "data": if args.clusters > 0 {
            format!("{} Gaussian clusters, noise 0.5", args.clusters)
        } else {
            "i.i.d. Gaussian".to_owned()
        },
        "build_seconds": build_s, "exact_mean_ms": exact_ms, "hnsw": rows,
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

/// The built-in fast upstream: a fixed OpenAI chat completion, answered at once.
fn fast_upstream() -> axum::Router {
    use axum::routing::post;
    let body = json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "fast",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
            "message": {"role": "assistant", "content": "Your order #W2611340 ships tomorrow.", "refusal": null}}],
        "usage": {"prompt_tokens": 42, "completion_tokens": 9, "total_tokens": 51}
    })
    .to_string();
    axum::Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let body = body.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    )
}

async fn spawn_router(router: axum::Router) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(format!("http://{address}/v1"))
}

#[derive(Debug, Clone)]
struct Path {
    name: &'static str,
    url: String,
    model: String,
    /// A bearer key to send.
    key: Option<String>,
}

fn chat_body(model: &str) -> String {
    json!({"model": model, "max_tokens": 16, "messages": [
        {"role": "system", "content": "You are the support assistant of an online shop."},
        {"role": "user", "content": "Hi, where is my order #W2611340? My email is jane.doe@example.com."}
    ]})
    .to_string()
}

/// One fixed-rate round: latencies (s) of the answered requests, errors, achieved rps.
async fn fixed_rate(
    client: &reqwest::Client,
    path: &Path,
    rps: u32,
    seconds: u32,
) -> (Vec<f64>, usize, f64) {
    let url = format!("{}/chat/completions", path.url);
    let body = chat_body(&path.model);
    let auth = path.key.as_ref().map(|k| format!("Bearer {k}"));
    let total = rps as u64 * seconds as u64;
    let period = Duration::from_secs_f64(1.0 / rps as f64);
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        tokio::time::sleep_until(started + period * n as u32).await;
        let (client, url, body, auth) = (client.clone(), url.clone(), body.clone(), auth.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let mut request = client.post(url).header("content-type", "application/json");
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let ok = match request.body(body).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (sent.elapsed().as_secs_f64(), ok)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok((latency, true)) => latencies.push(latency),
            _ => errors += 1,
        }
    }
    let achieved = latencies.len() as f64 / started.elapsed().as_secs_f64();
    (latencies, errors, achieved)
}

/// Closed loop: `concurrency` clients sending back to back for `seconds`; requests/s.
async fn throughput(
    client: &reqwest::Client,
    path: &Path,
    concurrency: usize,
    seconds: u32,
) -> f64 {
    let url = format!("{}/chat/completions", path.url);
    let body = chat_body(&path.model);
    let auth = path.key.as_ref().map(|k| format!("Bearer {k}"));
    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, body, auth) =
                (client.clone(), url.clone(), body.clone(), auth.clone());
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    let mut request = client.post(&url).header("content-type", "application/json");
                    if let Some(auth) = &auth {
                        request = request.header("authorization", auth);
                    }
                    let ok = match request.body(body.clone()).send().await {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    done += ok as u64;
                }
                done
            })
        })
        .collect();
    let mut done = 0;
    for w in workers {
        done += w.await.unwrap_or(0);
    }
    done as f64 / started.elapsed().as_secs_f64()
}

/// Mean milliseconds of one exact budget decision (reserve, then settle) of a key with a
/// budget on `platform`'s store, over 500 in a row.
async fn budget_decision_ms(platform: &hearth_core::Platform) -> Result<f64> {
    let platform = platform.clone();
    tokio::task::spawn_blocking(move || -> Result<f64> {
        let keys = platform
            .gateway()
            .keys()
            .context("the gateway has no key store")?;
        let (secret, _) = keys.create(hearth_gateway::keys::NewKey {
            name: format!(
                "bench-decision-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros())
            ),
            budget: Some(1e9),
            ..Default::default()
        })?;
        let key = keys.authenticate(&secret)?.context("the new key")?;
        const N: u32 = 500;
        keys.admit(&key, 10, 1e-6)?.settle(10, 1e-6);
        let started = Instant::now();
        for _ in 0..N {
            keys.admit(&key, 10, 1e-6)?.settle(10, 1e-6);
        }
        Ok(started.elapsed().as_secs_f64() * 1000.0 / N as f64)
    })
    .await?
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1))
        .map(|s| s * 1000.0)
        .unwrap_or(f64::NAN)
}

async fn gateway(args: BenchGatewayArgs) -> Result<()> {
    if args.rps == 0 || args.seconds == 0 || args.rounds == 0 {
        bail!("--rps, --seconds and --rounds must be at least 1");
    }
    let upstream = match &args.upstream {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => spawn_router(fast_upstream()).await?,
    };
    let data = tempfile::tempdir()?;
    let config_text = format!(
        r#"
data_dir = {data:?}
[gateway]
[[gateway.providers]]
name = "bench-upstream"
base_url = "{upstream}"
timeout_seconds = 30.0
[[gateway.routes]]
alias = "bench"
privacy = "{privacy}"
deployments = [{{ provider = "bench-upstream", model = "{model}", price = "gpt-4o-mini" }}]
"#,
        data = data.path().display().to_string(),
        privacy = args.privacy,
        model = args.upstream_model,
    );
    let config = hearth_core::Config::from_toml(&config_text).map_err(anyhow::Error::msg)?;
    let platform = hearth_core::Platform::open(config.clone())?;
    let hearth = spawn_router(hearth_server::router(platform.clone())).await?;
    let mut paths = vec![
        Path {
            name: "direct",
            url: upstream.clone(),
            model: args.upstream_model.clone(),
            key: None,
        },
        Path {
            name: "hearth",
            url: hearth.clone(),
            model: "bench".into(),
            key: None,
        },
    ];
    // A budget no request reaches: every request is reserved and settled, none refused.
    let key = |platform: &hearth_core::Platform, budget: Option<f64>| -> Result<String> {
        let keys = platform
            .gateway()
            .keys()
            .context("the gateway has no key store")?;
        Ok(keys
            .create(hearth_gateway::keys::NewKey {
                name: format!(
                    "bench-{}-{}",
                    if budget.is_some() { "budget" } else { "plain" },
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_micros())
                ),
                budget,
                ..Default::default()
            })?
            .0)
    };
    let budget_key = |platform: &hearth_core::Platform| key(platform, Some(1e9));
    if args.budgets {
        // Once a key exists every request needs one: the plain path sends one without limits.
        paths[1].key = Some(key(&platform, None)?);
        paths.push(Path {
            name: "hearth+budget",
            url: hearth.clone(),
            model: "bench".into(),
            key: Some(budget_key(&platform)?),
        });
    }
    let mut on_postgres = None;
    if let Some(url) = std::env::var("HEARTH_STORE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        // The same hearth on PostgreSQL, as a replica: every request authenticated (its key
        // read from the database) and metered into it; with --budgets also a budget key.
        // The embedded hearth then takes a key too, so the two differ only in their store.
        if paths[1].key.is_none() {
            paths[1].key = Some(key(&platform, None)?);
        }
        let mut config = config.clone();
        config.store.url = Some(hearth_core::StoreUrl::new(url.trim()));
        let platform = hearth_core::Platform::open(config)?;
        let served = spawn_router(hearth_server::router(platform.clone())).await?;
        paths.push(Path {
            name: "hearth on PostgreSQL",
            url: served.clone(),
            model: "bench".into(),
            key: Some(key(&platform, None)?),
        });
        if args.budgets {
            paths.push(Path {
                name: "hearth+budget on PostgreSQL",
                url: served,
                model: "bench".into(),
                key: Some(budget_key(&platform)?),
            });
        }
        on_postgres = Some(platform);
    }
    if let Some(peer) = &args.peer {
        paths.push(Path {
            name: "peer",
            url: peer.trim_end_matches('/').to_owned(),
            model: args.peer_model.clone(),
            key: None,
        });
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()?;
    // Warm-up: connections on every path.
    for path in &paths {
        let (_, errors, _) = fixed_rate(&client, path, 200, 1).await;
        if errors > 0 {
            bail!(
                "{} ({}) does not answer chat completions",
                path.name,
                path.url
            );
        }
    }
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut errors = vec![0usize; paths.len()];
    let mut achieved = vec![Vec::new(); paths.len()];
    for round in 0..args.rounds {
        for (i, path) in paths.iter().enumerate() {
            let (l, e, a) = fixed_rate(&client, path, args.rps, args.seconds).await;
            eprintln!(
                "round {} {}: {} answered, {e} errors, {a:.0} req/s",
                round + 1,
                path.name,
                l.len()
            );
            latencies[i].extend(l);
            errors[i] += e;
            achieved[i].push(a);
        }
    }
    let mut throughputs = vec![Vec::new(); paths.len()];
    if args.concurrency > 0 {
        for _ in 0..args.rounds {
            for (i, path) in paths.iter().enumerate() {
                let rps = throughput(&client, path, args.concurrency, args.seconds).await;
                eprintln!("throughput {}: {rps:.0} req/s", path.name);
                throughputs[i].push(rps);
            }
        }
    }
    let mut results = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let l = &mut latencies[i];
        l.sort_by(|a, b| a.total_cmp(b));
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        results.push(json!({
            "path": path.name, "url": path.url,
            "requests": l.len() + errors[i], "errors": errors[i],
            "achieved_rps": mean(&achieved[i]),
            "p50_ms": percentile(l, 0.50), "p90_ms": percentile(l, 0.90),
            "p99_ms": percentile(l, 0.99), "max_ms": percentile(l, 1.0),
            "throughput_rps": (!throughputs[i].is_empty()).then(|| mean(&throughputs[i])),
        }));
    }
    let added = |key: &str, i: usize| {
        results[i][key].as_f64().unwrap_or(f64::NAN) - results[0][key].as_f64().unwrap_or(f64::NAN)
    };
    let ratio = |i: usize| {
        results[i]["throughput_rps"]
            .as_f64()
            .zip(results[0]["throughput_rps"].as_f64())
            .map(|(p, d)| p / d)
    };
    let mut hops = json!({
        "hearth_added_p50_ms": added("p50_ms", 1),
        "hearth_added_p99_ms": added("p99_ms", 1),
        "hearth_throughput_ratio": ratio(1),
    });
    for (i, path) in paths.iter().enumerate().skip(2) {
        let name = path.name.replace(['+', ' '], "_").to_lowercase();
        hops[format!("{name}_added_p50_ms")] = json!(added("p50_ms", i));
        hops[format!("{name}_added_p99_ms")] = json!(added("p99_ms", i));
        hops[format!("{name}_throughput_ratio")] = json!(ratio(i));
    }
    // One key's decision alone: reserve then settle, one request at a time, on each store.
    let mut decisions = serde_json::Map::new();
    if args.budgets {
        let stores = std::iter::once(("sqlite", &platform))
            .chain(on_postgres.as_ref().map(|p| ("postgresql", p)));
        for (name, p) in stores {
            decisions.insert(name.into(), json!(budget_decision_ms(p).await?));
        }
    }
    hops["budget_decision_ms"] = json!(decisions);
    drop(on_postgres);
    let metered = platform
        .gateway()
        .usage_report(None, None, Default::default(), None)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "target_rps": args.rps, "seconds_per_round": args.seconds, "rounds": args.rounds,
            "concurrency": args.concurrency, "privacy": args.privacy,
            "paths": results, "hop": hops,
            "requests_metered_by_hearth": metered.total.requests,
        }))?
    );
    Ok(())
}
