use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hearth_core::{ApiKey, Config, Platform};
use hearth_gateway::ChatEvent;
use hearth_infer::hub::{self, HubOptions, PullProgress, PullSpec};
use hearth_infer::registry::ModelInfo;
use hearth_types::{
    ChatCompletionRequest, ChatMessage, EmbeddingInput, EmbeddingRequest, SamplingFields,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{
    ChatArgs, Cli, Command, ConfigCommand, EmbedArgs, GlobalArgs, ModelsArgs, ModelsCommand,
    PullArgs, ServeArgs,
};

pub async fn run(cli: Cli) -> Result<()> {
    let config = load_config(&cli.global)?;
    match cli.command {
        Command::Serve(args) => serve(apply_serve_args(config, args)).await,
        Command::Chat(args) => chat(config, args).await,
        Command::Embed(args) => embed(config, args).await,
        Command::Pull(args) => pull(config, args).await,
        Command::Models(args) => models(config, args),
        Command::Recs { command } => crate::recs::run(config, command).await,
        Command::Support { command } => crate::support::run(config, command).await,
        Command::DemoShop(args) => crate::support::demo_shop(args).await,
        Command::Keys { command } => crate::gateway::keys(config, command),
        Command::Users { command } => crate::users::run(config, command),
        Command::Usage { command } => crate::gateway::usage(config, command),
        Command::Routes { json } => crate::gateway::routes(config, json),
        Command::Store { command } => crate::store::run(config, command).await,
        Command::Bench { command } => crate::bench::run(command, config.llm.threads).await,
        Command::Config {
            command: ConfigCommand::Show,
        } => {
            print!("{}", config.to_toml_redacted());
            Ok(())
        }
    }
}

/// defaults < hearth.toml < HEARTH_* env < flags (clap reads the env for each flag).
fn load_config(global: &GlobalArgs) -> Result<Config> {
    let path = match &global.config {
        Some(path) => Some(path.clone()),
        None => {
            let local = PathBuf::from("hearth.toml");
            let in_data = global
                .data_dir
                .clone()
                .unwrap_or_else(|| Config::default().data_dir)
                .join("hearth.toml");
            [local, in_data].into_iter().find(|p| p.is_file())
        }
    };
    let mut config = match path {
        Some(path) => Config::from_file(&path)?,
        None => Config::default(),
    };
    if let Some(dir) = &global.data_dir {
        config.data_dir = dir.clone();
    }
    // Read from the environment only: a password on the command line is seen by `ps`.
    if let Some(url) = std::env::var("HEARTH_STORE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        config.store.url = Some(hearth_core::StoreUrl::new(url.trim()));
    }
    if let Some(threads) = global.threads {
        if threads == 0 {
            bail!("--threads must be at least 1");
        }
        config.llm.threads = Some(threads);
        config.embeddings.threads = Some(threads);
    }
    Ok(config)
}

fn apply_serve_args(mut config: Config, args: ServeArgs) -> Config {
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if !args.api_keys.is_empty() {
        config.server.api_keys = args
            .api_keys
            .into_iter()
            .filter(|k| !k.is_empty())
            .map(ApiKey::new)
            .collect();
    }
    if !args.models.is_empty() {
        config.models.preload = args.models;
    }
    config
}

async fn serve(config: Config) -> Result<()> {
    let listen = config.server.listen.clone();
    let platform = Platform::open(config)?;
    platform.preload().await?;
    // Retrains recommendations on schedule while serving ([recs] train_interval_seconds).
    let _schedule = platform.spawn_recs_schedule();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "hearth is serving");
    let keys = !platform.config().server.api_keys.is_empty()
        || platform
            .gateway()
            .keys()
            .map(|k| k.any())
            .transpose()?
            .unwrap_or(false);
    if !addr.ip().is_loopback() && !keys {
        // One line, on stderr, that an operator cannot miss.
        eprintln!(
            "warning: listening on {addr} without API keys: anyone who can reach this machine \
             can use its models and data (`hearth keys create NAME --scope admin`, or listen \
             on 127.0.0.1)"
        );
        tracing::warn!(%addr, "reachable beyond loopback without an API key");
    }
    if platform.config().console.enabled {
        // Where the people who are not engineers go, on stderr beside the log.
        let accounts = platform.accounts()?.list()?;
        if accounts.is_empty() {
            eprintln!(
                "console: http://{addr}/console (no accounts yet: `hearth users create NAME --role admin`)"
            );
        } else {
            eprintln!("console: http://{addr}/console");
        }
    }
    // One line on stdout, for scripts that started us on port 0.
    println!("listening on http://{addr}");
    hearth_server::serve(listener, platform, shutdown_signal()).await?;
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn chat(config: Config, args: ChatArgs) -> Result<()> {
    let platform = Platform::open(config)?;
    let gateway = platform.gateway();
    gateway.load(&args.model).await?;
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(ChatMessage::new("system", system.clone()));
    }
    let interactive = args.prompt.is_none();
    let mut one_shot = args.prompt.clone();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        let user = match one_shot.take() {
            Some(prompt) => prompt,
            None if interactive => {
                eprint!("> ");
                std::io::stderr().flush()?;
                match lines.next() {
                    Some(line) => line?,
                    None => break,
                }
            }
            None => break,
        };
        if user.trim().is_empty() {
            continue;
        }
        messages.push(ChatMessage::new("user", user));
        let sampling = SamplingFields {
            max_tokens: Some(args.max_tokens),
            temperature: Some(args.temperature),
            ..Default::default()
        };
        let request = ChatCompletionRequest::streaming(&args.model, messages.clone(), sampling);
        let mut stream = gateway.chat(&request).await?;
        let mut answer = String::new();
        let mut stdout = std::io::stdout();
        while let Some(event) = stream.next().await {
            match event {
                ChatEvent::Delta(delta) => {
                    if let Some(text) = delta.content {
                        print!("{text}");
                        stdout.flush()?;
                        answer.push_str(&text);
                    }
                }
                ChatEvent::Finished { summary, .. } => {
                    println!();
                    let decode = summary.total.saturating_sub(summary.time_to_first_token);
                    let rate = if summary.completion_tokens > 1 && !decode.is_zero() {
                        (summary.completion_tokens - 1) as f64 / decode.as_secs_f64()
                    } else {
                        0.0
                    };
                    tracing::debug!(
                        tokens = summary.completion_tokens,
                        tokens_per_second = rate,
                        "answer done"
                    );
                }
                ChatEvent::Failed(e) => return Err(e.into()),
            }
        }
        messages.push(ChatMessage::new("assistant", answer));
    }
    Ok(())
}

async fn embed(config: Config, args: EmbedArgs) -> Result<()> {
    let platform = Platform::open(config)?;
    let response = platform
        .gateway()
        .embed(&EmbeddingRequest {
            model: args.model,
            input: EmbeddingInput::Texts(args.texts),
            encoding_format: None,
            dimensions: None,
            user: None,
        })
        .await?;
    println!("{}", serde_json::to_string(&response)?);
    Ok(())
}

struct BarProgress {
    bar: Option<ProgressBar>,
}

impl PullProgress for BarProgress {
    fn file_started(&mut self, file: &str, total_bytes: u64, resumed_from: u64) {
        let bar = ProgressBar::new(total_bytes);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(file.to_owned());
        bar.set_position(resumed_from);
        if resumed_from > 0 {
            bar.println(format!("resuming {file} from {resumed_from} bytes"));
        }
        self.bar = Some(bar);
    }

    fn advanced(&mut self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn file_finished(&mut self, _file: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

async fn pull(config: Config, args: PullArgs) -> Result<()> {
    let spec = args
        .spec
        .parse::<PullSpec>()?
        .with_revision(&args.revision)?;
    let options = HubOptions::from_env();
    let mut progress = BarProgress { bar: None };
    let pulled = hub::pull(&options, &spec, &mut progress).await?;
    println!(
        "{} @ {} -> {}",
        pulled.repo,
        pulled.commit,
        pulled.primary.display()
    );
    // Say what to call it: the name `hearth models` lists it under.
    let platform = Platform::open(config)?;
    if let Some(model) = platform
        .gateway()
        .models()?
        .into_iter()
        .find(|m| m.path == pulled.primary)
    {
        println!("serve it as: hearth serve --model {}", model.name);
    }
    Ok(())
}

fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.0}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.0}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n => format!("{:.0} MiB", n as f64 / (1u64 << 20) as f64),
    }
}

fn print_models(models: &[ModelInfo]) {
    println!(
        "{:<48} {:<9} {:<10} {:>7} {:<8} {:>8} {:>9}  BASE",
        "NAME", "KIND", "ARCH", "PARAMS", "QUANT", "CONTEXT", "SIZE"
    );
    for m in models {
        println!(
            "{:<48} {:<9} {:<10} {:>7} {:<8} {:>8} {:>9}  {}",
            m.name,
            m.kind.as_str(),
            m.architecture.as_deref().unwrap_or("?"),
            m.parameters.map(human_count).unwrap_or_else(|| "?".into()),
            m.quantization.as_deref().unwrap_or("-"),
            m.context_length
                .map(|c| c.to_string())
                .unwrap_or_else(|| "?".into()),
            human_bytes(m.size_bytes),
            m.base.as_deref().unwrap_or("-"),
        );
    }
}

fn models(config: Config, args: ModelsArgs) -> Result<()> {
    let platform = Platform::open(config)?;
    let registry = platform.gateway().registry();
    match args.command.unwrap_or(ModelsCommand::List) {
        ModelsCommand::List => {
            let models = registry.list()?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&models)?);
            } else if models.is_empty() {
                println!("no local models: `hearth pull ORG/REPO` or `hearth models import PATH`");
            } else {
                print_models(&models);
            }
        }
        ModelsCommand::Import { path, name, base } => {
            let info = match base {
                Some(base) => registry.import_adapter(&path, &base, name.as_deref())?,
                None => registry.import(&path, name.as_deref())?,
            };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print_models(std::slice::from_ref(&info));
            }
        }
        ModelsCommand::Remove { name } => {
            registry.remove(&name)?;
            println!("removed {name} (its files are untouched)");
        }
    }
    Ok(())
}
