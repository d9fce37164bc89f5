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
    /// Run the proxy. The config file is reloaded on SIGHUP and when it changes (providers,
    /// accounts, limits, routes); requests in flight are not disturbed.
    Serve {
        /// Config file. Default: $TOKENFOLD_CONFIG, ./config/tokenfold.toml,
        /// ~/.config/tokenfold/tokenfold.toml, else the built-in copy of the shipped config.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on (overrides server.listen), e.g. 127.0.0.1:8411 or 127.0.0.1:0.
        #[arg(long)]
        listen: Option<String>,
        /// Send every request to this base URL (same path under it) with the client's own
        /// credentials; no config file is read. Repeat it for a fallback route: the first URL,
        /// then the next ones in order when it is rate limited, down or refuses the key.
        #[arg(long, value_name = "URL")]
        upstream: Vec<String>,
        /// With --upstream: the dialect the upstream speaks (openai-chat, anthropic,
        /// openai-responses or gemini); requests in another dialect are translated. E.g. Claude
        /// Code on a local vLLM/Ollama/llama.cpp server: --upstream http://127.0.0.1:8000
        /// --upstream-dialect openai-chat; Codex on Gemini: --upstream
        /// https://generativelanguage.googleapis.com --upstream-dialect gemini (`/v1beta` is added)
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
        /// Group rows by: day, route, provider, account, model, status, mechanism (tokens saved,
        /// elisions, recalls and recall % per fold mechanism) or client.
        #[arg(long, default_value = "day")]
        by: String,
        /// One conversation: its id or a unique prefix of it. Without an id, or with a prefix that
        /// several share, lists recent conversations.
        #[arg(long, value_name = "ID", num_args = 0..=1)]
        session: Option<Option<String>>,
        /// Print JSON instead of a table.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV instead of a table.
        #[arg(long)]
        csv: bool,
        /// Ledger file, or a team's ledger in PostgreSQL (postgres://user:password@host/db: every
        /// instance's records). Default: $TOKENFOLD_LEDGER, else ~/.local/share/tokenfold/ledger.db.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// Fold recorded sessions turn by turn and report what would be saved (no network).
    Replay {
        /// Session files or folders: Claude Code / Codex JSONL, Gemini CLI sessions
        /// (~/.gemini/tmp/<project>/chats/*.json, *.jsonl) and `/chat share` JSON, SWE-agent .traj,
        /// mini-swe-agent .traj.json, OpenHands events, .aider.llm.history, request bodies.
        /// Default: ~/.claude/projects, ~/.codex/sessions and ~/.gemini/tmp.
        paths: Vec<PathBuf>,
        /// Print JSON (with a digest of every conversation's forwarded bodies) instead of a table.
        #[arg(long)]
        json: bool,
        /// Size of the stand-in system prompt + tool schemas per request for Claude Code, Codex
        /// and Gemini CLI files, which do not record them: reported as the "+sys" figure next to the saving over
        /// what the files record. 0 leaves it out.
        #[arg(long, default_value_t = tokenfold::replay::DEFAULT_SYSTEM_TOKENS)]
        system_tokens: u64,
        /// Fold level(s) to replay, comma-separated, or `all`: lossless (dedup only), balanced
        /// (the proxy's default), aggressive. Each is reported on its own (with --json and several
        /// levels: a JSON array of reports).
        #[arg(long, default_value = "balanced", value_parser = parse_levels)]
        level: Levels,
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
        /// The economics clearing stale tool output decides for at `balanced`: `cache` (a provider
        /// that caches prefixes, billed 0.1x for reads and 1.25x for writes, as the cache-billed
        /// figure is simulated) or `quota` (a free tier: clear whenever enough is clearable).
        /// `aggressive` always clears by the quota rule; `lossless` never clears.
        #[arg(long, default_value = "cache", value_parser = parse_target_kind)]
        target_kind: tokenfold::replay::TargetKind,
        /// Fit every turn to a free tier instead and report, per source, the share of turns that
        /// fit, the tokens sent and the minutes a session needs, with and without tokenfold.
        /// A TPM (`30000`, `30k`: a request holds at most that much, and a session needs its
        /// tokens ÷ TPM minutes) or a per-request budget (`8000/request`).
        #[arg(long, value_name = "TPM_OR_BUDGET", value_parser = parse_fit)]
        fit: Option<tokenfold::replay::fit::Limit>,
    },
    /// Show the provider pool: per provider, account and model, quota used and left per window,
    /// when windows reset, cooldowns and why, health and the last error. Asks the running proxy
    /// (GET /pool); when none answers, shows the state saved in the pool store.
    Pool {
        /// Config file (as for `serve`): says where the proxy listens and where the store is.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Ask the proxy at this address instead of the config's server.listen, e.g. http://127.0.0.1:8411.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
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

#[derive(Clone)]
struct Levels(Vec<tokenfold::fold::Level>);

/// `balanced`, `lossless,aggressive` or `all`.
fn parse_levels(s: &str) -> Result<Levels, String> {
    use tokenfold::fold::Level;
    if s.trim() == "all" {
        return Ok(Levels(Level::ALL.to_vec()));
    }
    s.split(',')
        .map(|p| Level::parse(p).ok_or_else(|| format!("`{p}` is not one of lossless, balanced, aggressive, all")))
        .collect::<Result<_, _>>()
        .map(Levels)
}

fn parse_fit(s: &str) -> Result<tokenfold::replay::fit::Limit, String> {
    tokenfold::replay::fit::Limit::parse(s)
        .ok_or_else(|| format!("`{s}` is not a TPM (`30000`, `30k`) or a per-request budget (`8000/request`)"))
}

fn parse_target_kind(s: &str) -> Result<tokenfold::replay::TargetKind, String> {
    tokenfold::replay::TargetKind::parse(s).ok_or_else(|| format!("`{s}` is not one of cache, quota"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, listen, upstream, upstream_dialect, upstream_model, debug } => {
            serve(config, listen, upstream, upstream_dialect, upstream_model, debug)
        }
        Command::Report { since, by, session, json, csv, ledger } => {
            tokenfold::ledger::cli::report(tokenfold::ledger::cli::ReportArgs { since, by, session, json, csv, ledger })
        }
        Command::Replay {
            paths,
            json,
            system_tokens,
            level,
            without,
            with,
            levers,
            ceiling,
            estimate,
            target_kind,
            fit,
        } => {
            let levels = level.0;
            let opts = tokenfold::replay::Options {
                paths,
                json,
                system_tokens,
                without,
                with,
                levers,
                ceiling,
                estimate,
                levels,
                target: target_kind,
                fit,
            };
            ExitCode::from(tokenfold::replay::run(opts))
        }
        Command::Pool { config, url, json } => {
            ExitCode::from(tokenfold::pool::show::run(tokenfold::pool::show::Options { config, url, json }))
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

fn serve(
    config: Option<PathBuf>,
    listen: Option<String>,
    upstream: Vec<String>,
    upstream_dialect: Option<String>,
    upstream_model: Option<String>,
    debug: bool,
) -> ExitCode {
    init_logging(debug);
    let speaks = match upstream_dialect.as_deref().map(|d| (d, Dialect::parse(d))) {
        None => None,
        Some((_, Some(d))) => Some(d),
        Some((d, None)) => {
            let names: Vec<&str> = Dialect::ALL.iter().map(|d| d.name()).collect();
            eprintln!("error: --upstream-dialect `{d}` is not one of {}", names.join(", "));
            return ExitCode::from(2);
        }
    };
    let loaded = if upstream.is_empty() {
        Config::load(config.as_deref())
    } else {
        let bases: Vec<&str> = upstream.iter().map(String::as_str).collect();
        Config::upstreams(&bases, speaks)
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
    server::raise_fd_limit();
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
        let config_file = cfg.file_path();
        let state = match AppState::with_model_override(cfg, upstream_model) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        // A team gateway starts on the shared state when Redis answers soon; else it starts alone.
        if let Some(redis) = state.pool().shared().cloned() {
            if !redis.ready(std::time::Duration::from_secs(3)).await {
                eprintln!(
                    "warning: shared state: Redis does not answer yet; admitting on this instance's own share of \
                     each limit until it does"
                );
            }
        }
        // From here SIGHUP reloads the config instead of ending the process.
        let reload_source = match config_file {
            Some(path) => server::reload::Source::File(path),
            None => server::reload::Source::Fixed(source.clone()),
        };
        if let Err(e) = server::reload::start(state.clone(), reload_source) {
            eprintln!("error: cannot watch for SIGHUP: {e}");
            return ExitCode::FAILURE;
        }
        // Tests and scripts read this line to learn the port when listening on :0.
        eprintln!("tokenfold listening on http://{addr} (config: {source})");
        eprintln!("  Claude Code: ANTHROPIC_BASE_URL=http://{addr} claude");
        eprintln!("  OpenAI SDKs: OPENAI_BASE_URL=http://{addr}/v1");
        eprintln!("  Gemini CLI:  GOOGLE_GEMINI_BASE_URL=http://{addr} gemini");
        server::serve(state, listener, stop_signals()).await;
        eprintln!("tokenfold stopped");
        ExitCode::SUCCESS
    })
}

/// One message per SIGTERM or SIGINT (Ctrl-C): the first stops the proxy gracefully, a second
/// ends the requests still in flight.
fn stop_signals() -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                (Ok(mut term), Ok(mut int)) => loop {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                    if tx.send(()).is_err() {
                        return;
                    }
                },
                (Err(e), _) | (_, Err(e)) => eprintln!("warning: cannot watch for SIGTERM/SIGINT ({e}); Ctrl-C only"),
            }
        }
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    rx
}

fn init_logging(debug: bool) {
    let default = if debug { "tokenfold=debug,info" } else { "tokenfold=info,warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOKENFOLD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal: logs piped to a file or a supervisor stay plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour)
        .init();
}
