//! `hearth support …`: the customer-service agent from the command line.

use anyhow::{Context, Result};
use hearth_core::support::intents::{
    self, read_labelled_csv, IntentProgress, IntentReport, IntentTrainOptions,
};
use hearth_core::{Config, Platform};
use indicatif::ProgressBar;

use crate::cli::{IntentsCommand, SupportCommand};

pub async fn run(config: Config, command: SupportCommand) -> Result<()> {
    match command {
        SupportCommand::Intents { command } => run_intents(config, command).await,
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
            let model = platform.support_embedding_model(args.embedding_model.as_deref())?;
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
