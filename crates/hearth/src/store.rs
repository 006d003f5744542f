//! `hearth store`: moving an embedded install's durable state into PostgreSQL.

use std::path::Path;

use anyhow::{bail, Context, Result};
use hearth_core::{Config, Platform, StoreUrl};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{StoreCommand, StoreMigrateArgs};

pub async fn run(config: Config, command: StoreCommand) -> Result<()> {
    match command {
        StoreCommand::Migrate(args) => migrate(config, args).await,
    }
}

async fn migrate(config: Config, args: StoreMigrateArgs) -> Result<()> {
    let to = args.to.trim();
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        bail!("--to must be a PostgreSQL URL (postgres://user:password@host:port/dbname)");
    }
    let file = config.data_dir.join("hearth.db");
    if !file.is_file() {
        bail!(
            "no embedded store at {}: --data-dir names the directory of the install to move",
            file.display()
        );
    }
    let source_dir = config.data_dir.join("artifacts");
    if let Some(dir) = &args.artifacts_dir {
        // Before touching the database: a refusal here leaves everything as it was.
        check_artifacts_target(&source_dir, dir)?;
    }

    // Both ends at this hearth's schema (the source may be an older install's).
    let mut source_config = config.clone();
    source_config.store.url = None;
    source_config.store.artifacts_dir = None;
    let source = Platform::open(source_config).context("opening the embedded store")?;
    source
        .migrate_store()
        .map_err(|e| anyhow::anyhow!("bringing the embedded store's schema up to date: {e}"))?;
    let mut target_config = config;
    target_config.store.url = Some(StoreUrl::new(to));
    let target = Platform::open(target_config).context("opening the PostgreSQL database")?;
    target
        .migrate_store()
        .map_err(|e| anyhow::anyhow!("creating the tables in PostgreSQL: {e}"))?;

    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let (from, into) = (source.store().db().clone(), target.store().db().clone());
    let progress = bar.clone();
    let copied = tokio::task::spawn_blocking(move || {
        from.copy_into(&into, &mut |table, rows| {
            progress.set_message(format!("{table}: {rows} rows"));
        })
    })
    .await?;
    bar.finish_and_clear();
    let copied = copied.context("copying into PostgreSQL (nothing was committed)")?;
    let total: u64 = copied.iter().map(|t| t.rows).sum();
    for table in &copied {
        println!("{:<24} {:>10} rows", table.table, table.rows);
    }
    println!(
        "copied {total} rows of {} tables from {} into {}",
        copied.len(),
        file.display(),
        target.store().db().path().display()
    );
    match &args.artifacts_dir {
        Some(dir) => {
            let files = copy_tree(&source_dir, dir)?;
            println!(
                "copied {files} files of published models to {}",
                dir.display()
            );
        }
        None if source_dir.is_dir() => println!(
            "published models stay in {}: copy them to the replicas' [store] artifacts_dir \
             (or run again on an empty database with --artifacts-dir)",
            source_dir.display()
        ),
        None => {}
    }
    println!("next: start every replica with HEARTH_STORE_URL set to this database");
    Ok(())
}

/// Refuses an artifacts directory that already holds a kind the source has (a second copy
/// would mix two installs' versions).
fn check_artifacts_target(source: &Path, target: &Path) -> Result<()> {
    let Ok(kinds) = std::fs::read_dir(source) else {
        return Ok(());
    };
    for kind in kinds {
        let kind = kind?;
        let there = target.join(kind.file_name());
        if there.read_dir().is_ok_and(|mut d| d.next().is_some()) {
            bail!(
                "{} already holds published models: give --artifacts-dir an empty directory",
                there.display()
            );
        }
    }
    Ok(())
}

/// Copies the directory tree `from` into `to` (links are not followed); the number of files.
fn copy_tree(from: &Path, to: &Path) -> Result<u64> {
    let mut files = 0;
    if !from.is_dir() {
        return Ok(0);
    }
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let (path, dest) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            files += copy_tree(&path, &dest)?;
        } else if kind.is_file() {
            std::fs::copy(&path, &dest)
                .with_context(|| format!("copying {} to {}", path.display(), dest.display()))?;
            files += 1;
        }
    }
    Ok(files)
}
