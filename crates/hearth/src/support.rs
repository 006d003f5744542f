//! `hearth support …`: the customer-service agent from the command line.

use anyhow::{Context, Result};
use hearth_core::support::demo_shop::RetailStore;
use hearth_core::support::eval::{
    evaluate, read_tasks, AgentKind, Domain, EvalOptions, ModelAgent,
};
use hearth_core::support::intents::{
    self, read_labelled_csv, IntentProgress, IntentReport, IntentTrainOptions,
};
use hearth_core::support::tools::Variables;
use hearth_core::{Config, Platform};
use indicatif::ProgressBar;

use crate::cli::{
    DemoShopArgs, EvalAgent, IntentsCommand, KbCommand, SupportCommand, SupportEvalArgs,
};

pub async fn run(config: Config, command: SupportCommand) -> Result<()> {
    match command {
        SupportCommand::Intents { command } => run_intents(config, command).await,
        SupportCommand::Eval(args) => eval(config, args).await,
        SupportCommand::Kb { command } => kb(config, command).await,
    }
}

async fn kb(config: Config, command: KbCommand) -> Result<()> {
    let platform = Platform::open(config)?;
    match command {
        KbCommand::Add {
            paths,
            embedding_model,
        } => {
            let progress = BarProgress(crate::recs::bar(0, "embedding"));
            let report = platform
                .add_documents(&paths, embedding_model.as_deref(), &progress)
                .await?;
            progress.0.finish_and_clear();
            println!(
                "{} added, {} updated, {} unchanged; {} new passages",
                report.added, report.updated, report.unchanged, report.passages
            );
        }
        KbCommand::List => {
            for (path, passages) in platform.knowledge_base()?.files()? {
                println!("{passages:>6}  {path}");
            }
        }
        KbCommand::Remove { paths, missing } => {
            let kb = platform.knowledge_base()?;
            if missing {
                for path in kb.drop_missing()? {
                    println!("dropped {path}");
                }
            }
            kb.remove(&paths)?;
        }
        KbCommand::Search { query, k, rerank } => {
            let index = platform.kb_index()?;
            let rerank = rerank_stage(&platform, &rerank);
            for hit in index
                .search_with(platform.gateway(), &query, k, rerank.as_ref())
                .await?
            {
                println!(
                    "[{}] {} ({})\n    {}",
                    hit.id,
                    hit.title,
                    hit.source,
                    hit.text.replace('\n', "\n    ")
                );
            }
        }
        KbCommand::Eval {
            labels,
            k,
            rerank,
            json,
        } => {
            let index = platform.kb_index()?;
            let labels = hearth_core::support::kb::read_labels(&labels)?;
            let rerank = rerank_stage(&platform, &rerank);
            let bar = crate::recs::bar(labels.len() as u64, "searching");
            let report = hearth_core::support::kb::evaluate(
                &index,
                platform.gateway(),
                &labels,
                k,
                rerank.as_ref(),
                &|| bar.inc(1),
            )
            .await?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{} queries, {}: hit@1 {:.3}, recall@{k} {:.3}, MRR@{k} {:.3}, {:.3} s per search",
                    report.queries,
                    match (&report.rerank, rerank.as_ref().is_some_and(|r| r.fuse)) {
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
        }
    }
    Ok(())
}

/// The rerank stage the flags ask for: theirs, none, or the config's.
fn rerank_stage(
    platform: &Platform,
    args: &crate::cli::RerankArgs,
) -> Option<hearth_core::support::kb::Rerank> {
    args.apply(platform.kb_rerank(args.rerank.as_deref()))
}

pub async fn demo_shop(args: DemoShopArgs) -> Result<()> {
    let store = RetailStore::load(&args.data)?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data = %args.data.display(), "demo shop is serving");
    println!("listening on http://{addr}");
    serve_until_signal(listener, store).await
}

async fn serve_until_signal(listener: tokio::net::TcpListener, store: RetailStore) -> Result<()> {
    let shop = hearth_server::spawn_demo_shop(listener, store);
    tokio::select! {
        done = shop => done??,
        _ = crate::commands::shutdown_signal() => {}
    }
    Ok(())
}

async fn eval(config: Config, args: SupportEvalArgs) -> Result<()> {
    let platform = Platform::open(config)?;
    let domain = Domain::load(&args.domain, args.data.as_deref())
        .with_context(|| format!("loading the domain {}", args.domain.display()))?;
    let mut tasks = read_tasks(&args.tasks)?;
    if let Some(limit) = args.limit {
        tasks.truncate(limit);
    }
    let mut vars = Variables::default();
    let _shop = match domain.backend.as_deref() {
        Some("demo-shop") => {
            let store = RetailStore::load(&domain.data_dir)?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            vars.0.insert("SHOP_URL".into(), format!("http://{addr}"));
            Some(AbortOnDrop(hearth_server::spawn_demo_shop(listener, store)))
        }
        Some(other) => anyhow::bail!(
            "{}: unknown backend '{other}' (the built-in one is demo-shop; leave it out to use \
             a running system)",
            args.domain.display()
        ),
        None => None,
    };
    let options = EvalOptions {
        agent: match args.agent {
            EvalAgent::Oracle => AgentKind::Oracle,
            EvalAgent::Idle => AgentKind::Idle,
            EvalAgent::Model => {
                let agent_model = platform.support_chat_model(args.model.as_deref()).await?;
                AgentKind::Model(ModelAgent {
                    customer_model: args.customer_model.clone().unwrap_or(agent_model.clone()),
                    agent_model,
                    max_turns: args.max_turns,
                    max_tool_rounds: args.max_tool_rounds,
                })
            }
        },
        runs: args.runs,
    };
    let progress = crate::recs::bar((tasks.len() * args.runs) as u64, "conversations");
    let report = evaluate(
        &domain,
        Some(platform.gateway()),
        &vars,
        &tasks,
        &options,
        &|done, _| progress.set_position(done as u64),
    )
    .await?;
    progress.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: {} tasks × {} runs, agent {:?}: pass^1 {:.1}%, pass^{} {:.1}%, tool-call \
             validity {:.1}%, {:.1} turns and {:.0} tokens per conversation, {} gold actions \
             refused by the system; {:.1} s",
            report.domain,
            report.tasks,
            report.runs,
            report.agent,
            report.pass_1 * 100.0,
            report.runs,
            report.pass_k * 100.0,
            report.tool_call_validity * 100.0,
            report.mean_turns,
            report.mean_tokens,
            report.gold_refusals,
            report.seconds
        );
        let failed: Vec<String> = report
            .results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| format!("{}#{}", r.task, r.run))
            .collect();
        if !failed.is_empty() {
            println!("failed (task#run): {}", failed.join(" "));
        }
    }
    Ok(())
}

/// Stops a background server when the command ends.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Embedding progress on a bar; stages as its message.
struct BarProgress(ProgressBar);

impl IntentProgress for BarProgress {
    fn embedded(&self, done: usize, total: usize) {
        self.0.set_length(total as u64);
        self.0.set_position(done as u64);
    }
    fn stage(&self, name: &str) {
        self.0.set_message(name.to_string());
    }
}

async fn run_intents(config: Config, command: IntentsCommand) -> Result<()> {
    let platform = Platform::open(config)?;
    match command {
        IntentsCommand::Train(args) => {
            let examples = read_labelled_csv(&args.data)?;
            let model = platform
                .support_embedding_model(args.embedding_model.as_deref())
                .await?;
            let options = IntentTrainOptions {
                c: args.c,
                handover_rate: args.handover_rate,
                ..IntentTrainOptions::new(model)
            };
            let progress = BarProgress(crate::recs::bar(examples.len() as u64, "embedding"));
            let (trained, version) = platform
                .train_intents(&examples, &options, &progress)
                .await
                .with_context(|| format!("training on {}", args.data.display()))?;
            progress.0.finish_and_clear();
            let summary = serde_json::json!({
                "intents": trained.intents().len(),
                "examples": trained.trained_examples(),
                "embedding_model": trained.embedding_model(),
                "threshold": trained.threshold(),
                "train_seconds": trained.train_seconds(),
                "version": version.version,
                "dir": version.dir,
            });
            if args.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!(
                    "trained {} intents on {} examples in {:.1} s with '{}'; out of scope below \
                     score {:.3}; published version {} ({})",
                    trained.intents().len(),
                    trained.trained_examples(),
                    trained.train_seconds(),
                    trained.embedding_model(),
                    trained.threshold(),
                    version.version,
                    version.dir.display()
                );
            }
        }
        IntentsCommand::Eval(args) => {
            let test = read_labelled_csv(&args.data)?;
            let model = platform.intent_model()?;
            let progress = BarProgress(crate::recs::bar(test.len() as u64, "embedding"));
            let report = intents::evaluate(platform.gateway(), &model, &test, &progress).await?;
            progress.0.finish_and_clear();
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
        }
        IntentsCommand::Classify(args) => {
            let model = platform.intent_model()?;
            for text in &args.texts {
                let p = model.classify(platform.gateway(), text).await?;
                println!(
                    "{}\t{:.3}\t{}\t{text}",
                    p.intent,
                    p.score,
                    if p.in_scope {
                        "in scope"
                    } else {
                        "out of scope: hand over"
                    }
                );
            }
        }
    }
    Ok(())
}

fn print_report(r: &IntentReport) {
    println!(
        "{} test messages, {} intents, embedding model '{}' (trained on {} examples in {:.1} s)",
        r.test_examples, r.intents, r.embedding_model, r.train_examples, r.train_seconds
    );
    println!(
        "{:<28} {:>9} {:>9} {:>10} {:>16}",
        "model", "accuracy", "macro-F1", "handed over", "routed accuracy"
    );
    for (name, s) in [
        ("trained (TF-IDF + embedding)", &r.trained),
        ("zero-shot (intent names)", &r.zero_shot),
    ] {
        println!(
            "{name:<28} {:>8.2}% {:>8.2}% {:>9.2}% {:>15.2}%",
            s.accuracy * 100.0,
            s.macro_f1 * 100.0,
            s.handover_rate * 100.0,
            s.routed_accuracy * 100.0
        );
    }
    println!(
        "trained is {:+.1}% against zero-shot accuracy",
        r.relative_gain * 100.0
    );
}
