//! Real coding agents end to end through `tokenfold serve`: Claude Code, Codex CLI, OpenCode and
//! Gemini CLI (pinned npm versions) each play a scripted coding task against a mock provider,
//! offline.
//!
//! Its own runner (`harness = false`) so that a client that cannot be installed is printed as
//! SKIPPED with the reason, never as passed. Ends with `N passed, N failed, N skipped`; exits
//! non-zero on any failure. `cargo test --test agents -- NAME` runs the cases whose name contains
//! NAME. Each case keeps its logs (mock requests, tap, strace, agent and proxy output) under
//! target/tmp/agents/CASE.

#![forbid(unsafe_code)]

#[path = "../clear_support/mod.rs"]
mod clear_support;
#[path = "../common/mod.rs"]
mod common;
#[path = "../fit_support/mod.rs"]
mod fit_support;

mod checks;
mod clients;
mod free_tiers;
mod install;
mod model;
mod prereqs;
mod provider;
mod sandbox;
mod scenario;
mod tap;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clients::Agent;
use provider::Dialect;

struct Case {
    name: &'static str,
    agent: Agent,
    /// The dialect the mock speaks when it is not the agent's own (the proxy translates).
    translated_to: Option<Dialect>,
    /// The long session (`scenario::long`): a clearing step, then a read of a stub's original.
    long: bool,
    /// Through a route of three mock free tiers (`free_tiers.rs`) instead of one provider.
    free_tiers: bool,
}

const fn case(name: &'static str, agent: Agent, translated_to: Option<Dialect>) -> Case {
    Case { name, agent, translated_to, long: false, free_tiers: false }
}

const CASES: [Case; 18] = [
    case("claude-code", Agent::ClaudeCode, None),
    case("claude-code-on-openai-chat", Agent::ClaudeCode, Some(Dialect::Chat)),
    case("codex", Agent::Codex, None),
    case("opencode", Agent::OpenCode, None),
    case("codex-on-openai-chat", Agent::Codex, Some(Dialect::Chat)),
    case("codex-on-anthropic", Agent::Codex, Some(Dialect::Anthropic)),
    case("opencode-on-anthropic", Agent::OpenCode, Some(Dialect::Anthropic)),
    case("gemini-cli", Agent::GeminiCli, None),
    case("gemini-cli-on-anthropic", Agent::GeminiCli, Some(Dialect::Anthropic)),
    // On a Gemini 3 model (the mock checks the thought signatures it handed out come back).
    case("claude-code-on-gemini", Agent::ClaudeCode, Some(Dialect::Gemini)),
    case("codex-on-gemini", Agent::Codex, Some(Dialect::Gemini)),
    case("opencode-on-gemini", Agent::OpenCode, Some(Dialect::Gemini)),
    Case { long: true, ..case("claude-code-long", Agent::ClaudeCode, None) },
    Case { long: true, ..case("codex-long", Agent::Codex, None) },
    Case { long: true, ..case("opencode-long", Agent::OpenCode, None) },
    // An 8k-input tier, a 12k-TPM tier and a 40k-window tier, all OpenAI Chat.
    Case { free_tiers: true, ..case("claude-code-on-three-free-tiers", Agent::ClaudeCode, Some(Dialect::Chat)) },
    // The long session there: past the 40k window, so requests are fitted.
    Case {
        free_tiers: true,
        long: true,
        ..case("claude-code-long-on-three-free-tiers", Agent::ClaudeCode, Some(Dialect::Chat))
    },
    Case { long: true, ..case("gemini-cli-long", Agent::GeminiCli, None) },
];

/// Set by the outer run for the inner one: why the npm install failed.
const INSTALL_ERROR_ENV: &str = "TOKENFOLD_AGENTS_INSTALL_ERROR";

enum Verdict {
    Pass(String),
    Fail(String),
    Skip(String),
}

fn agent_limit() -> Duration {
    let secs = std::env::var("TOKENFOLD_AGENTS_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(180);
    Duration::from_secs(secs)
}

/// Case-name filters from the command line; libtest's own flags are accepted and ignored.
fn filters(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--test-threads" | "--format" | "--color" | "--logfile" | "--skip" | "-Z" => {
                it.next();
            }
            s if s.starts_with('-') => {}
            s => out.push(s.to_string()),
        }
    }
    out
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for c in &CASES {
            println!("{}: test", c.name);
        }
        return ExitCode::SUCCESS;
    }
    let wanted = filters(&args);
    // A filter equal to a case name picks that case alone; otherwise every name containing it.
    let picks = |c: &Case| {
        wanted.is_empty()
            || wanted.iter().any(|w| c.name == w || (!CASES.iter().any(|k| k.name == w) && c.name.contains(w.as_str())))
    };
    let selected: Vec<&Case> = CASES.iter().filter(|c| picks(c)).collect();
    if selected.is_empty() {
        println!("agents: 0 passed, 0 failed, 0 skipped");
        return ExitCode::SUCCESS;
    }
    // Up front: which tools this machine lacks, for the selected cases.
    let missing: Vec<prereqs::Missing> =
        prereqs::missing().into_iter().filter(|m| selected.iter().any(|c| m.needed_by(c.agent))).collect();
    if std::env::var_os(sandbox::INSIDE_ENV).is_none() {
        for m in &missing {
            println!("agents: {}", m.line());
        }
        if !missing.is_empty() && prereqs::under_ci() {
            let tools: Vec<&str> = missing.iter().map(|m| m.bin).collect();
            println!("FAIL agents: missing under CI=true: {} (.ci/run installs them)", tools.join(", "));
            return ExitCode::FAILURE;
        }
        if let Err(e) = sandbox::self_check().and_then(|_| checks::self_check()) {
            println!("FAIL agents: {e}");
            return ExitCode::FAILURE;
        }
        // Installs need the network: before entering the namespace.
        if let Err(e) = install::ensure() {
            std::env::set_var(INSTALL_ERROR_ENV, e);
        }
        match sandbox::reexec_in_namespace(&args) {
            Ok(Some(code)) => return ExitCode::from(code.clamp(0, 255) as u8),
            Ok(None) => {}
            Err(why) => println!("agents: no network namespace ({why}); strace alone records what the agents try"),
        }
    }
    match sandbox::isolation() {
        sandbox::Isolation::Namespace => println!("agents: running offline in a network namespace with only `lo`"),
        sandbox::Isolation::HostNetwork(what) => println!("agents: running on the host network ({what})"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            println!("FAIL agents: no tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for case in selected {
        let started = Instant::now();
        print!("agents: {} ... ", case.name);
        let _ = std::io::stdout().flush();
        let verdict = match missing.iter().find(|m| m.needed_by(case.agent)) {
            Some(m) => Verdict::Skip(m.line().to_string()),
            None => runtime.block_on(run_case(case)),
        };
        let secs = started.elapsed().as_secs_f64();
        match verdict {
            Verdict::Pass(figures) => {
                passed += 1;
                println!("PASS ({secs:.0} s): {figures}");
            }
            Verdict::Fail(why) => {
                failed += 1;
                println!("FAIL ({secs:.0} s)\n{why}");
            }
            Verdict::Skip(why) => {
                skipped += 1;
                println!("SKIPPED: {why}");
            }
        }
    }
    println!("agents: {passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("agents").join(name)
}

async fn run_case(case: &Case) -> Verdict {
    let agent = case.agent;
    if let Ok(e) = std::env::var(INSTALL_ERROR_ENV) {
        return Verdict::Skip(format!("{} could not be installed from the npm registry: {e}", agent.package()));
    }
    let exe = match install::client(agent.bin(), agent.package()) {
        Ok(p) => p,
        Err(e) => return Verdict::Skip(e),
    };
    let strace = match sandbox::strace() {
        Ok(s) => s,
        Err(e) => return Verdict::Skip(format!("cannot record the agent's connection attempts: {e}")),
    };
    let dir = case_dir(case.name);
    let _ = std::fs::remove_dir_all(&dir);
    let repo = scenario::repo_dir(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| scenario::create_repo(&repo)) {
        return Verdict::Fail(format!("scratch repository: {e}"));
    }
    match play(case, &exe, &strace, &dir, &repo).await {
        Ok(outcome) if outcome.failures.is_empty() => {
            let notes: String = outcome.notes.iter().map(|n| format!("\n  note: {n}")).collect();
            Verdict::Pass(format!("{}{notes}", outcome.figures.join("; ")))
        }
        Ok(outcome) => {
            let mut text: Vec<String> = outcome.failures.iter().map(|f| format!("  - {f}")).collect();
            text.extend(outcome.notes.iter().map(|n| format!("  note: {n}")));
            text.push(format!("  figures: {}", outcome.figures.join("; ")));
            text.push(format!("  logs: {}", dir.display()));
            Verdict::Fail(text.join("\n"))
        }
        Err(e) => Verdict::Fail(format!("  {e}\n  logs: {}", dir.display())),
    }
}

/// Mock, proxy and tap up; the agent run; the evidence checked.
async fn play(case: &Case, exe: &Path, strace: &str, dir: &Path, repo: &Path) -> Result<checks::Outcome, String> {
    let agent = case.agent;
    let upstream = case.translated_to.unwrap_or(agent.dialect());
    // On the free tiers the long session reads files large enough that requests need fitting.
    let parts =
        if case.free_tiers { scenario::long::Parts::Read(free_tiers::PART_LINES) } else { scenario::long::Parts::Run };
    if case.long && parts != scenario::long::Parts::Run {
        scenario::long::write_parts(repo, parts.lines()).map_err(|e| format!("the parts to read: {e}"))?;
    }
    let long = case.long.then_some(parts);
    let script = Arc::new(model::Script::new(repo.to_path_buf(), dir.join("mock-requests.jsonl"), long));
    let handler = script.clone();
    let mock = common::mock::start(move |rec| handler.handle(rec)).await;
    let ledger = dir.join("ledger.db");
    let ledger_env = [("TOKENFOLD_LEDGER", ledger.to_str().unwrap_or_default()), ("T_KEY", "k")];
    let mock_base = mock.base();
    let tiers = if case.free_tiers { Some(free_tiers::start(&script, case.long).await) } else { None };
    let proxy = match case.translated_to {
        _ if tiers.is_some() => {
            let cfg = dir.join("tokenfold.toml");
            let text = tiers.as_ref().map(|t| t.config(agent.model(), &dir.join("originals"))).unwrap_or_default();
            std::fs::write(&cfg, text).map_err(|e| e.to_string())?;
            common::try_spawn_proxy(&["--config", cfg.to_str().unwrap_or_default(), "--debug"], &ledger_env)
        }
        None => {
            let cfg = dir.join("tokenfold.toml");
            let originals = case.long.then(|| dir.join("originals"));
            std::fs::write(&cfg, proxy_config(&mock.base(), agent, originals.as_deref())).map_err(|e| e.to_string())?;
            common::try_spawn_proxy(&["--config", cfg.to_str().unwrap_or_default(), "--debug"], &ledger_env)
        }
        Some(d) => {
            let mut args = vec!["--upstream", mock_base.as_str(), "--upstream-dialect", d.name(), "--debug"];
            // A Gemini 3 model name: the mock then checks every call's thought signature.
            if d == Dialect::Gemini {
                args.extend(["--upstream-model", Agent::GeminiCli.model()]);
            }
            common::try_spawn_proxy(&args, &ledger_env)
        }
    }
    .map_err(|(code, logs)| format!("tokenfold serve did not start (exit {code:?}):\n{logs}"))?;
    if agent == Agent::ClaudeCode {
        startup_probe(&proxy.base).await?;
    }
    let tap = tap::start(proxy.base.clone()).await.map_err(|e| format!("tap: {e}"))?;
    let trace_path = dir.join("strace.txt");
    let prompt = if case.long { scenario::long::PROMPT } else { scenario::PROMPT };
    let mut cmd = agent
        .command(&sandbox::strace_prefix(strace, &trace_path), exe, dir, repo, &tap.base(), prompt)
        .map_err(|e| format!("agent config: {e}"))?;
    if tiers.is_some() {
        // What a free-tier user sets: the 32k default output would take most of a 40k window.
        cmd.env("CLAUDE_CODE_MAX_OUTPUT_TOKENS", free_tiers::MAX_OUTPUT);
    }
    let out_dir = dir.to_path_buf();
    let limit = agent_limit();
    let run = tokio::task::spawn_blocking(move || clients::run(cmd, &out_dir, limit))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("could not start {}: {e}", agent.bin()))?;
    let seen = script.seen();
    let exchanges = tap.exchanges();
    let ledger_figures = ledger_totals(&ledger, seen.len() as u64).await;
    let tier_outcome =
        tiers.as_ref().map(|t| t.check(&exchanges, &report(&ledger, "provider"), &report(&ledger, "mechanism")));
    let _ = std::fs::write(dir.join("proxy.log"), proxy.logs());
    write_tap_log(&dir.join("tap.jsonl"), &exchanges);
    drop(proxy);
    drop(mock);
    let trace = std::fs::read_to_string(&trace_path).ok();
    let evidence = checks::Evidence {
        agent,
        long: case.long,
        upstream,
        run: &run,
        exchanges: &exchanges,
        seen: &seen,
        repo,
        trace: trace.as_deref(),
        ledger: ledger_figures,
    };
    let mut outcome = checks::check(&evidence);
    if let Some(t) = tier_outcome {
        outcome.failures.extend(t.failures);
        outcome.figures.extend(t.figures);
    }
    Ok(outcome)
}

/// The request Claude Code sends first when nonessential traffic is on (here it is off: that mode
/// also looks up api.anthropic.com). The proxy must answer it, not 404.
async fn startup_probe(proxy: &str) -> Result<(), String> {
    let url = format!("{proxy}/api/hello");
    let status = reqwest::Client::new().head(&url).send().await.map_err(|e| format!("HEAD {url}: {e}"))?.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("Claude Code's start-up probe HEAD /api/hello got {status} from the proxy"))
    }
}

/// One scripted provider in the agent's own dialect. With `originals` (the long session) it is a
/// free tier, which clears as soon as enough old output is clearable, and stubs name originals
/// in that directory.
fn proxy_config(mock: &str, agent: Agent, originals: Option<&Path>) -> String {
    let (kind, key) = match agent.dialect() {
        Dialect::Anthropic => ("anthropic", "anthropic"),
        Dialect::Chat => ("openai", "openai-chat"),
        Dialect::Responses => ("openai-responses", "openai-responses"),
        Dialect::Gemini => ("gemini", "gemini"),
    };
    // Gemini's base URL names its API version.
    let version = if agent.dialect() == Dialect::Gemini { "v1beta" } else { "v1" };
    let (store, free) = match originals {
        Some(d) => (format!("originals_dir = \"{}\"", d.display()), "true"),
        None => (String::new(), "false"),
    };
    format!(
        r#"# Written by tests/agents: one scripted provider in the agent's own dialect.
[server]
listen = "127.0.0.1:0"

[timeouts]
connect_ms = 2000
first_byte_ms = 60000
idle_ms = 60000

[fold]
enabled = true
{store}

[[providers]]
name = "scripted"
kind = "{kind}"
base_url = "{mock}/{version}"
auth = "client"
free_tier = {free}
models = ["{model}"]

[default_upstream]
{key} = "scripted"
"#,
        model = agent.model()
    )
}

fn report(ledger: &Path, by: &str) -> Result<serde_json::Value, String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
        .args(["report", "--json", "--since", "24h", "--by", by, "--ledger"])
        .arg(ledger)
        .output()
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&out.stdout).map_err(|_| {
        format!(
            "tokenfold report: {} {}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

fn saved(row: &serde_json::Value) -> u64 {
    row["tokens_before"].as_u64().unwrap_or(0).saturating_sub(row["tokens_after"].as_u64().unwrap_or(0))
}

/// The ledger's totals once it holds at least `expected` requests (it is written off the hot
/// path) or 10 s have passed.
async fn ledger_totals(ledger: &Path, expected: u64) -> Result<checks::LedgerTotals, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let done = Instant::now() > deadline;
        match report(ledger, "day") {
            Ok(v) if done || v["total"]["requests"].as_u64().unwrap_or(0) >= expected => {
                let mechanisms = report(ledger, "mechanism")?;
                let by_mechanism = mechanisms["mechanisms"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        format!("{}: {}", r["key"].as_str().unwrap_or("?"), r["tokens_saved"].as_u64().unwrap_or(0))
                    })
                    .collect();
                let requests = v["total"]["requests"].as_u64().unwrap_or(0);
                let clear =
                    mechanisms["mechanisms"].as_array().and_then(|rows| rows.iter().find(|r| r["key"] == "clear"));
                let figure = |k: &str| clear.and_then(|r| r[k].as_u64()).unwrap_or(0);
                return Ok(checks::LedgerTotals {
                    requests,
                    saved: saved(&v["total"]),
                    by_mechanism,
                    clear_steps: figure("steps"),
                    clear_recalls: figure("recalls"),
                });
            }
            Err(e) if done => return Err(e),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn write_tap_log(path: &Path, exchanges: &[tap::Exchange]) {
    let lines: Vec<String> = exchanges
        .iter()
        .map(|x| {
            serde_json::json!({
                "seq": x.seq, "method": x.method, "path": x.path, "status": x.status, "error": x.error,
                "error_body": x.error_body,
                "request_headers": x.request_headers, "response_headers": x.response_headers,
                "body": String::from_utf8_lossy(&x.body),
            })
            .to_string()
        })
        .collect();
    let _ = std::fs::write(path, lines.join("\n") + "\n");
}
