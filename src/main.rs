//! The `tokenfold` command line. Everything it does lives in the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokenfold::config::Config;
use tokenfold::dialect::Dialect;
use tokenfold::server::{self, AppState};

#[derive(Parser)]
#[command(
    name = "tokenfold",
    version,
    about = "A local proxy for coding agents: folds repeated context, routes across providers, reports what it saved.",
    after_help = "Point an agent at it:\n  \
        ANTHROPIC_BASE_URL=http://127.0.0.1:8411 claude\n  \
        OPENAI_BASE_URL=http://127.0.0.1:8411/v1 your-openai-sdk-program"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// Config file. Default: $TOKENFOLD_CONFIG, ./config/tokenfold.toml,
        /// ~/.config/tokenfold/tokenfold.toml, else the built-in copy of the shipped config.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on (overrides server.listen), e.g. 127.0.0.1:8411 or 127.0.0.1:0.
        #[arg(long)]
        listen: Option<String>,
        /// Send every request to this base URL (same path under it) with the client's own
        /// credentials; no config file is read.
        #[arg(long, value_name = "URL")]
        upstream: Option<String>,
        /// With --upstream: the dialect the upstream speaks (openai-chat, anthropic or
        /// openai-responses); requests in another dialect are translated. E.g. Claude Code on a
        /// local vLLM/Ollama/llama.cpp server: --upstream http://127.0.0.1:8000 --upstream-dialect openai-chat
        #[arg(long, value_name = "DIALECT", requires = "upstream")]
        upstream_dialect: Option<String>,
        /// Replace the model name of every request with NAME.
        #[arg(long, value_name = "NAME")]
        upstream_model: Option<String>,
        /// Verbose logs (never includes keys or request bodies).
        #[arg(long)]
        debug: bool,
    },
    /// Show what the proxy saved: requests, tokens, cost (cache aware), free-tier use, overhead.
    Report {
        /// Period: 24h, 7d, 30d, 90m or a date (YYYY-MM-DD, UTC).
        #[arg(long, default_value = "7d")]
        since: String,
        /// Group rows by: day, route, provider, model, mechanism or client.
        #[arg(long, default_value = "day")]
        by: String,
        /// Only this conversation (the `session` column of the ledger).
        #[arg(long)]
        session: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV instead of a table.
        #[arg(long)]
        csv: bool,
        /// Ledger file. Default: $TOKENFOLD_LEDGER, else ~/.local/share/tokenfold/ledger.db.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// Fold recorded sessions turn by turn and report what would be saved (no network).
    Replay {
        /// Session files or folders: Claude Code / Codex JSONL, SWE-agent .traj, mini-swe-agent
        /// .traj.json, OpenHands events, .aider.llm.history, request bodies. Default: ~/.claude/projects
        /// and ~/.codex/sessions.
        paths: Vec<PathBuf>,
        /// Print JSON (with a digest of every conversation's forwarded bodies) instead of a table.
        #[arg(long)]
        json: bool,
        /// Size of the stand-in system prompt + tool schemas per request for Claude Code and Codex
        /// files, which do not record them: reported as the "+sys" figure next to the saving over
        /// what the files record. 0 leaves it out.
        #[arg(long, default_value_t = tokenfold::replay::DEFAULT_SYSTEM_TOKENS)]
        system_tokens: u64,
        /// Switch a fold lever off: same-block, templates, grep-prefixes, short-markers, calibrated-gate.
        #[arg(long, value_name = "LEVER")]
        without: Vec<String>,
        /// Switch an opt-in lever on, to measure it: view-spans (can cut Edit anchors).
        #[arg(long, value_name = "LEVER")]
        with: Vec<String>,
        /// Also replay once per lever with it off and report what each lever saves.
        #[arg(long)]
        levers: bool,
        /// Also measure the lossless ceiling: what any pointer dedup could remove at most.
        #[arg(long)]
        ceiling: bool,
        /// Count tokens with a byte estimate instead of o200k (fast; digests are unchanged).
        #[arg(long)]
        estimate: bool,
    },
    /// Validate the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate the config and print the effective settings with secrets masked.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, listen, upstream, upstream_dialect, upstream_model, debug } => {
            serve(config, listen, upstream, upstream_dialect, upstream_model, debug)
        }
        Command::Report { since, by, session, json, csv, ledger } => {
            report(&since, &by, session.as_deref(), json, csv, ledger)
        }
        Command::Replay { paths, json, system_tokens, without, with, levers, ceiling, estimate } => {
            let opts =
                tokenfold::replay::Options { paths, json, system_tokens, without, with, levers, ceiling, estimate };
            ExitCode::from(tokenfold::replay::run(opts))
        }
        Command::Config { action: ConfigAction::Check { config } } => match Config::load(config.as_deref()) {
            Ok(cfg) => {
                print!("{}", cfg.render_masked());
                for n in cfg.notices() {
                    eprintln!("note: {n}");
                }
                eprintln!("config OK ({})", cfg.source);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn report(since: &str, by: &str, session: Option<&str>, json: bool, csv: bool, ledger: Option<PathBuf>) -> ExitCode {
    use tokenfold::ledger::report;
    let Some(since_ms) = report::parse_since(since, tokenfold::ledger::now_ms()) else {
        eprintln!("error: --since `{since}` is not like 24h, 7d, 30d or 2026-11-01");
        return ExitCode::from(2);
    };
    let Some(group) = report::GroupBy::parse(by) else {
        eprintln!("error: --by `{by}` is not one of day, route, provider, model, mechanism, client");
        return ExitCode::from(2);
    };
    let Some(path) = ledger.or_else(server::ledger_path) else {
        eprintln!("error: the ledger is off (TOKENFOLD_LEDGER=off); pass --ledger PATH");
        return ExitCode::from(2);
    };
    if !path.exists() {
        eprintln!("no ledger yet at {}: run `tokenfold serve` and send some requests first", path.display());
        return ExitCode::from(1);
    }
    match report::build(&path, since_ms, group, session) {
        Ok(rep) if json => match serde_json::to_string_pretty(&rep) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(rep) if csv => {
            print!("{}", report::render_csv(&rep));
            ExitCode::SUCCESS
        }
        Ok(rep) => {
            print!("{}", report::render_table(&rep));
            println!("(tokens: provider-reported input plus tokenfold's estimate of what folding removed)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot read the ledger at {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

fn serve(
    config: Option<PathBuf>,
    listen: Option<String>,
    upstream: Option<String>,
    upstream_dialect: Option<String>,
    upstream_model: Option<String>,
    debug: bool,
) -> ExitCode {
    init_logging(debug);
    let speaks = match upstream_dialect.as_deref().map(|d| (d, Dialect::parse(d))) {
        None => None,
        Some((_, Some(d))) => Some(d),
        Some((d, None)) => {
            eprintln!("error: --upstream-dialect `{d}` is not one of openai-chat, anthropic, openai-responses");
            return ExitCode::from(2);
        }
    };
    let loaded = match &upstream {
        Some(url) => Config::single_upstream(url, speaks),
        None => Config::load(config.as_deref()),
    };
    let mut cfg = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(l) = listen {
        match l.parse() {
            Ok(addr) => cfg.listen = addr,
            Err(_) => {
                eprintln!("error: --listen `{l}` is not an address like 127.0.0.1:8411");
                return ExitCode::from(2);
            }
        }
    }
    if let Err(e) = server::check_exposure(&cfg, cfg.listen) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", cfg.listen);
                return ExitCode::FAILURE;
            }
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        for n in cfg.notices() {
            eprintln!("note: {n}");
        }
        let source = cfg.source.clone();
        let state = match AppState::with_model_override(cfg, upstream_model) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Tests and scripts read this line to learn the port when listening on :0.
        eprintln!("tokenfold listening on http://{addr} (config: {source})");
        eprintln!("  Claude Code: ANTHROPIC_BASE_URL=http://{addr} claude");
        eprintln!("  OpenAI SDKs: OPENAI_BASE_URL=http://{addr}/v1");
        server::serve(state, listener, shutdown_signal()).await;
        eprintln!("tokenfold stopped");
        ExitCode::SUCCESS
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn init_logging(debug: bool) {
    let default = if debug { "tokenfold=debug,info" } else { "tokenfold=info,warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOKENFOLD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
