//! `hearth recs …`: the recommendation engine from the command line.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hearth_core::recs::bundle::{TrainOptions, TrainProgress};
use hearth_core::recs::eval::{self, EvalOptions, EvalProgress, ModelPlan};
use hearth_core::recs::import::{
    read_all, ColumnMapping, DataFiles, FileSummary, FromRow, RowError,
};
use hearth_core::recs::models::{embed_items, ModelKind};
use hearth_core::recs::store::{
    import_file, ImportOptions, ImportProgress, ImportSummary, RecsStore, StoredRecord,
};
use hearth_core::recs::train::ModelParams;
use hearth_core::recs::{Dataset, Event, EventWeights, Item, User};
use hearth_core::{Config, Platform};
use indicatif::{ProgressBar, ProgressStyle};

use hearth_core::recs::serve::ItemFilter;
use hearth_core::recs_service::{read_search_labels, RecommendationList, SearchQuery};

use crate::cli::{RecsCommand, RecsEvalArgs, RecsImportArgs, RecsListArgs, RecsTrainArgs};

pub async fn run(config: Config, command: RecsCommand) -> Result<()> {
    match command {
        RecsCommand::Eval(args) => eval(config, args).await,
        RecsCommand::Import(args) => import(config, args).await,
        RecsCommand::Train(args) => train(config, args).await,
        RecsCommand::Recommend(args) => {
            let platform = Platform::open(config)?;
            let (n, filter, json) = list_args(args.list);
            let list = platform.recommend(&args.user, n, filter).await?;
            print_list(&list, json)
        }
        RecsCommand::Similar(args) => {
            let platform = Platform::open(config)?;
            let (n, filter, json) = list_args(args.list);
            let list = platform.similar(&args.item, n, filter).await?;
            print_list(&list, json)
        }
        RecsCommand::Search(args) => {
            let platform = Platform::open(config)?;
            let (n, filter, json) = list_args(args.list);
            let query = SearchQuery {
                query: args.query,
                n,
                user: args.user,
                filter,
            };
            let stage = args
                .rerank
                .apply(platform.recs_rerank(args.rerank.rerank.as_deref()));
            let list = platform.search_with(query, stage.as_ref()).await?;
            print_list(&list, json)
        }
        RecsCommand::SearchEval(args) => {
            let platform = Platform::open(config)?;
            let labels = read_search_labels(&args.labels)?;
            let stage = args
                .rerank
                .apply(platform.recs_rerank(args.rerank.rerank.as_deref()));
            let bar = bar(labels.len() as u64, "searching");
            let report = platform
                .search_eval(&labels, args.k, stage.as_ref(), &|| bar.inc(1))
                .await?;
            bar.finish_and_clear();
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                let k = report.k;
                println!(
                    "{} queries, {}: hit@1 {:.3}, recall@{k} {:.3}, MRR@{k} {:.3}, {:.3} s per search",
                    report.queries,
                    match (&report.rerank, report.fused) {
                        (Some(model), false) => format!("hybrid + rerank by {model}"),
                        (Some(model), true) => format!("hybrid fused with rerank by {model}"),
                        (None, _) => "hybrid (BM25 + vectors)".to_owned(),
                    },
                    report.hit_at_1,
                    report.recall_at_k,
                    report.mrr_at_k,
                    report.seconds_per_query
                );
            }
            Ok(())
        }
    }
}

fn list_args(args: RecsListArgs) -> (usize, ItemFilter, bool) {
    let filter = ItemFilter {
        category: args.category,
        min_price: args.min_price,
        max_price: args.max_price,
        in_stock: args.in_stock,
    };
    (args.n, filter, args.json)
}

/// A ranked list as a table (rank, item, score, title, why), or as the API's JSON.
fn print_list(list: &RecommendationList, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(list)?);
        return Ok(());
    }
    if list.data.is_empty() {
        eprintln!("no items match (model version {})", list.model_version);
        return Ok(());
    }
    println!(
        "{:>4}  {:<16} {:>8}  {:<40}  why",
        "rank", "item", "score", "title"
    );
    for (rank, r) in list.data.iter().enumerate() {
        let title: String = r.title.chars().take(40).collect();
        println!(
            "{:>4}  {:<16} {:>8.4}  {:<40}  {}",
            rank + 1,
            r.item.0,
            r.score,
            title,
            r.reason
        );
    }
    eprintln!("model version {}", list.model_version);
    Ok(())
}

/// Where skipped rows are reported: stderr always (through the progress bar, so the two do
/// not interleave, and whether or not stderr is a terminal), and the `--errors` file.
struct RowReport {
    file: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
}

impl RowReport {
    fn new(path: Option<&PathBuf>) -> Result<RowReport> {
        let file = match path {
            Some(p) => Some((
                p.clone(),
                std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating the --errors file {}", p.display()))?,
                ),
            )),
            None => None,
        };
        Ok(RowReport { file })
    }

    fn row(&mut self, bar: &ProgressBar, e: &RowError) -> Result<()> {
        bar.suspend(|| eprintln!("skipped {e}"));
        if let Some((path, out)) = &mut self.file {
            use std::io::Write;
            let line = serde_json::json!({
                "file": e.file.display().to_string(),
                "line": e.line,
                "message": e.message,
            });
            writeln!(out, "{line}").with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if let Some((path, out)) = &mut self.file {
            use std::io::Write;
            out.flush()
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

fn import_one<T: StoredRecord>(
    store: &RecsStore,
    path: &std::path::Path,
    mapping: &ColumnMapping,
    options: &ImportOptions,
    report: &mut RowReport,
) -> Result<ImportSummary> {
    let bar = ProgressBar::new(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template("{msg:24!} [{bar:30}] {bytes}/{total_bytes} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let mut report_error = None;
    let summary = import_file::<T>(store, path, mapping, options, &mut |p| match p {
        ImportProgress::Read { done, .. } => bar.set_position(done),
        ImportProgress::BadRow(e) => {
            if let Err(err) = report.row(&bar, e) {
                report_error.get_or_insert(err);
            }
        }
        ImportProgress::Committed(_) => {}
    });
    bar.finish_and_clear();
    report.finish()?;
    if let Some(err) = report_error {
        return Err(err);
    }
    let summary = summary.with_context(|| format!("importing {}", path.display()))?;
    Ok(summary)
}

async fn import(config: Config, args: RecsImportArgs) -> Result<()> {
    if args.items.is_none() && args.users.is_none() && args.events.is_none() {
        bail!("nothing to import: give --items, --users and/or --events");
    }
    let mut mapping = ColumnMapping::default();
    for spec in &args.map {
        mapping.add(spec)?;
    }
    let options = ImportOptions {
        strict: args.strict,
        batch_size: args.batch_size,
    };
    let mut report = RowReport::new(args.errors.as_ref())?;
    let platform = Platform::open(config)?;
    let store = platform.recs_store()?;
    let summaries = tokio::task::spawn_blocking(move || -> Result<Vec<ImportSummary>> {
        let mut summaries = Vec::new();
        let report = &mut report;
        if let Some(path) = &args.items {
            summaries.push(import_one::<Item>(
                &store, path, &mapping, &options, report,
            )?);
        }
        if let Some(path) = &args.users {
            summaries.push(import_one::<User>(
                &store, path, &mapping, &options, report,
            )?);
        }
        if let Some(path) = &args.events {
            summaries.push(import_one::<Event>(
                &store, path, &mapping, &options, report,
            )?);
        }
        Ok(summaries)
    })
    .await??;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summaries)?);
    } else {
        for s in &summaries {
            println!(
                "{}: {} stored, {} already stored, {} skipped",
                s.file.display(),
                s.stored,
                s.duplicates,
                s.skipped
            );
        }
    }
    Ok(())
}

pub fn bar(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:24!} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message.to_owned());
    bar
}

/// Reads one file if there is one, reporting bad rows on stderr.
fn read_file<T: FromRow>(
    path: Option<&PathBuf>,
    mapping: &ColumnMapping,
    strict: bool,
    summaries: &mut Vec<FileSummary>,
) -> Result<Vec<T>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let mut report = |e: &RowError| eprintln!("skipped {e}");
    let (records, summary) = read_all(path, mapping, strict, &mut report)?;
    summaries.push(summary);
    Ok(records)
}

/// Reads a data directory, reporting bad rows on stderr.
pub fn load_dataset(
    dir: &std::path::Path,
    mapping: &ColumnMapping,
    strict: bool,
    weights: &EventWeights,
) -> Result<Dataset> {
    let files = DataFiles::discover(dir)?;
    let mut summaries = Vec::new();
    let items: Vec<Item> = read_file(files.items.as_ref(), mapping, strict, &mut summaries)?;
    let users: Vec<User> = read_file(files.users.as_ref(), mapping, strict, &mut summaries)?;
    let events: Vec<Event> = read_file(files.events.as_ref(), mapping, strict, &mut summaries)?;
    for s in &summaries {
        eprintln!(
            "read {}: {} rows, {} skipped",
            s.file.display(),
            s.stored,
            s.skipped
        );
    }
    Ok(Dataset::build(items, users, &events, weights))
}

/// Embeds every item's text with a progress bar.
async fn embed_catalogue(
    platform: &Platform,
    model: &str,
    data: &Dataset,
) -> Result<hearth_core::recs::models::ItemVectors> {
    let progress = bar(data.catalogue.len() as u64, "embedding items");
    let vectors = embed_items(platform.gateway(), model, &data.catalogue, &|done| {
        progress.set_position(done as u64)
    })
    .await
    .with_context(|| format!("embedding item texts with '{model}'"))?;
    progress.finish_and_clear();
    Ok(vectors)
}

struct CandidateProgress(ProgressBar);

impl TrainProgress for CandidateProgress {
    fn candidate(&self, params: &ModelParams, ndcg: f64) {
        self.0.inc(1);
        self.0
            .set_message(format!("{} NDCG@10 {ndcg:.4}", params.kind()));
    }
}

async fn train(mut config: Config, args: RecsTrainArgs) -> Result<()> {
    if args.embedding_model.is_some() {
        config.recs.embedding_model = args.embedding_model.clone();
    }
    let platform = Platform::open(config)?;
    let options = TrainOptions {
        models: args.models.clone(),
        ..Default::default()
    };
    let candidates: usize = options
        .models
        .iter()
        .map(|&k| ModelParams::grid(k, options.seed).len())
        .sum();
    let progress = bar(candidates as u64, "training");
    let (report, version) = platform
        .train_recs(options, Box::new(CandidateProgress(progress.clone())))
        .await?;
    progress.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let best = report
            .candidates
            .iter()
            .filter(|(p, _)| *p == report.chosen)
            .map(|(_, n)| *n)
            .next();
        println!(
            "published version {version}: {} ({}) on {} users, {} items, {} interactions in {:.1} s",
            report.chosen.kind(),
            match best {
                Some(n) => format!("validation NDCG@{} {n:.4}", report.k),
                None => "too little data to validate".into(),
            },
            report.users,
            report.items,
            report.interactions,
            report.seconds
        );
    }
    Ok(())
}

struct BarProgress(ProgressBar);

impl EvalProgress for BarProgress {
    fn model_started(&self, model: ModelKind, candidates: usize) {
        self.0.set_message(format!("{model}"));
        self.0.set_position(0);
        self.0.set_length(candidates as u64);
    }

    fn candidate_done(&self) {
        self.0.inc(1);
    }
}

async fn eval(config: Config, args: RecsEvalArgs) -> Result<()> {
    let mut mapping = ColumnMapping::default();
    for spec in &args.map {
        mapping.add(spec)?;
    }
    let kinds = if args.models.is_empty() {
        ModelKind::ALL.to_vec()
    } else {
        args.models.clone()
    };
    let plans: Vec<ModelPlan> = if !args.params.is_empty() {
        args.params
            .iter()
            .map(|p| {
                serde_json::from_str::<ModelParams>(p)
                    .map(ModelPlan::fixed)
                    .with_context(|| format!("--params '{p}'"))
            })
            .collect::<Result<_>>()?
    } else if args.no_search {
        kinds
            .iter()
            .map(|&k| ModelPlan::defaults(k, args.seed))
            .collect()
    } else {
        kinds
            .iter()
            .map(|&k| ModelPlan::search(k, args.seed))
            .collect()
    };
    let needs_vectors = plans.iter().any(|p| p.kind.needs_vectors());
    let embedding_model = args
        .embedding_model
        .clone()
        .or_else(|| config.recs.embedding_model.clone());
    if embedding_model.is_none() && needs_vectors {
        bail!(
            "the content model and the off-the-shelf baseline read item texts with an embedding \
             model: pass --embedding-model NAME (see `hearth models`), set [recs] \
             embedding_model, or leave them out with --models"
        );
    }
    let weights = config.recs.weights();
    let platform = Platform::open(config)?;
    let data = match &args.data {
        Some(dir) => load_dataset(dir, &mapping, args.strict, &weights)
            .with_context(|| format!("reading {}", dir.display()))?,
        None => {
            let store = platform.recs_store()?;
            tokio::task::spawn_blocking(move || store.dataset(&weights)).await??
        }
    };
    if data.interactions.is_empty() {
        bail!(
            "no events to evaluate on: pass --data DIR or import events with `hearth recs import`"
        );
    }
    eprintln!(
        "{} users, {} items, {} interactions",
        data.n_users(),
        data.n_items(),
        data.interactions.len()
    );
    let vectors = match embedding_model.filter(|_| needs_vectors) {
        Some(model) => Some(embed_catalogue(&platform, &model, &data).await?),
        None => None,
    };
    let options = EvalOptions {
        models: plans,
        save_split: args.save_split.clone(),
        ..EvalOptions::search_all(args.protocol, args.k, args.seed)
    };
    let progress = BarProgress(bar(1, "training"));
    let report = tokio::task::spawn_blocking(move || {
        let report = eval::evaluate(&data, vectors.as_ref(), &options, &progress);
        progress.0.finish_and_clear();
        report
    })
    .await??;
    if let Some(path) = &args.plot {
        std::fs::write(path, report.svg())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.markdown());
    }
    Ok(())
}
