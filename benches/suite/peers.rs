//! Starting and configuring each proxy in front of the mock: tokenfold (release binary, config
//! file), LiteLLM proxy (pip venv, YAML config) and 9Router (npm package, configured through
//! its own HTTP API, as its dashboard does). Each lands in the table with its start-up time and
//! idle memory, or with the reason it could not run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use crate::bodies::{self, Dialect};
use crate::client::{self, Call, Conn};
use crate::mock::FAIL_PREFIX;
use crate::procs::{self, GroupRss, RssSampler, Spawned};

/// The key the suite's client sends direct and through tokenfold (which forwards it, as
/// `auth = "client"` does for a user's own key).
pub const CLIENT_KEY: &str = "sk-suite-client-0000";
const LITELLM_MASTER_KEY: &str = "sk-suite-7c1e5a9d3f0b4e6a8c2d4f6b8a0c2e4f";
const NINEROUTER_PASSWORD: &str = "suite-only-password-4d9c";

/// The model names under which a peer reaches the mock.
pub struct Models {
    pub anthropic: String,
    pub openai: String,
    pub failover_503: Option<String>,
    pub failover_refused: Option<String>,
}

#[derive(Clone)]
pub struct StartUp {
    pub median: Duration,
    pub runs: usize,
    pub min: Duration,
    pub max: Duration,
    /// Median time until the process said it listens (tokenfold prints a line; others do not).
    pub to_listening: Option<Duration>,
}

pub struct Running {
    pub name: &'static str,
    pub version: String,
    pub addr: SocketAddr,
    pub process: Spawned,
    pub key: String,
    pub models: Models,
    pub start: StartUp,
    pub idle: GroupRss,
    pub sampler: RssSampler,
    /// How the peer was set up, for the notes under the table.
    pub setup: String,
}

impl Running {
    pub fn call(&self, dialect: Dialect, model: &str, size: usize, stream: bool) -> Result<Call, String> {
        Ok(Call {
            path: dialect.path(),
            body: bodies::body(dialect, model, size, stream)?,
            headers: client::client_headers(dialect, &self.key)?,
        })
    }

    pub fn model(&self, dialect: Dialect) -> &str {
        match dialect {
            Dialect::Anthropic => &self.models.anthropic,
            Dialect::OpenaiChat => &self.models.openai,
        }
    }
}

/// Where the suite keeps its files: the peers' installs (from benches/suite.sh) and this run's
/// configs, data and logs.
pub struct Dirs {
    pub peers: Option<PathBuf>,
    pub run: PathBuf,
}

impl Dirs {
    fn log(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.log"))
    }
}

/// Polls with a real chat request until the peer answers 200; the time is since spawn.
async fn first_200(
    process: &mut Spawned,
    addr: SocketAddr,
    probe: &Call,
    timeout: Duration,
    poll: Duration,
) -> Result<Duration, String> {
    loop {
        if let Ok(mut conn) = Conn::open(addr).await {
            if conn.send(probe).await.is_ok() {
                return Ok(process.started.elapsed());
            }
        }
        if let Some(status) = process.exited() {
            return Err(format!("exited ({status}) before answering: {}", last_line(&process.log_tail())));
        }
        if process.started.elapsed() > timeout {
            return Err(format!("no 200 within {} s: {}", timeout.as_secs(), last_line(&process.log_tail())));
        }
        tokio::time::sleep(poll).await;
    }
}

fn last_line(log: &str) -> String {
    log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no output)").chars().take(200).collect()
}

fn probe(model: &str, key: &str) -> Result<Call, String> {
    Ok(Call {
        path: Dialect::OpenaiChat.path(),
        body: bodies::body(Dialect::OpenaiChat, model, 1024, false)?,
        headers: client::client_headers(Dialect::OpenaiChat, key)?,
    })
}

async fn settle_and_measure(process: &Spawned) -> GroupRss {
    tokio::time::sleep(Duration::from_millis(1000)).await;
    procs::group_rss(process.pgid())
}

fn startup_stats(mut runs: Vec<Duration>, mut listening: Vec<Duration>) -> StartUp {
    runs.sort();
    listening.sort();
    StartUp {
        to_listening: listening.get(listening.len() / 2).copied(),
        median: runs.get(runs.len() / 2).copied().unwrap_or_default(),
        runs: runs.len(),
        min: runs.first().copied().unwrap_or_default(),
        max: runs.last().copied().unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// tokenfold

fn tokenfold_config(mock: SocketAddr, refused: u16) -> String {
    format!(
        r#"# Written by benches/suite.rs: the mock as Anthropic and OpenAI upstream, and two routes whose
# first target is down (503 / connection refused) for the failover rows.
[fold]
enabled = true

[[providers]]
name = "mock-anthropic"
kind = "anthropic"
base_url = "http://{mock}/v1"
auth = "client"
models = ["claude-sonnet-4-5"]

[[providers]]
name = "mock-openai"
kind = "openai"
base_url = "http://{mock}/v1"
auth = "client"
models = ["gpt-5"]

[[providers]]
name = "down-503"
kind = "openai"
base_url = "http://{mock}{FAIL_PREFIX}/v1"
auth = "client"
models = ["gpt-5"]

[[providers]]
name = "down-refused"
kind = "openai"
base_url = "http://127.0.0.1:{refused}/v1"
auth = "client"
models = ["gpt-5"]

[routes.failover-503]
strategy = "fallback"
targets = ["down-503/gpt-5", "mock-openai/gpt-5"]

[routes.failover-refused]
strategy = "fallback"
targets = ["down-refused/gpt-5", "mock-openai/gpt-5"]

[pool]
store = "memory"
# Demote a failed target for 1 ms only and never open the breaker, so that every failover
# sample (spaced 3 ms apart) really tries the down target first.
short_cooldown_ms = 1
breaker_failures = 1000000000
breaker_open_ms = 1

[default_upstream]
anthropic = "mock-anthropic"
openai-chat = "mock-openai"
"#
    )
}

/// Starts `tokenfold serve` `starts` times (start-up is the median) and keeps the last one.
pub async fn start_tokenfold(
    bin: &Path,
    mock: SocketAddr,
    refused: u16,
    dirs: &Dirs,
    starts: usize,
) -> Result<Running, String> {
    let config = dirs.run.join("tokenfold.toml");
    std::fs::write(&config, tokenfold_config(mock, refused)).map_err(|e| format!("write {}: {e}", config.display()))?;
    // Every request is recorded in a fresh ledger, as in real use; TOKENFOLD_LEDGER (e.g. `off`)
    // in the suite's environment overrides that, to see what the ledger costs.
    let ledger =
        std::env::var_os("TOKENFOLD_LEDGER").map(PathBuf::from).unwrap_or_else(|| dirs.run.join("tokenfold-ledger.db"));
    let probe = probe("gpt-5", CLIENT_KEY)?;
    let (mut runs, mut listening) = (Vec::new(), Vec::new());
    let mut last = None;
    // The first start creates the ledger; the others find it, as every later start of a user's does.
    let _ = std::fs::remove_file(&ledger);
    for _ in 0..starts.max(1) {
        drop(last.take());
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--config"])
            .arg(&config)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("TOKENFOLD_CONFIG")
            .env("TOKENFOLD_LEDGER", &ledger)
            .env("NO_COLOR", "1");
        let mut process = procs::spawn(cmd, &dirs.log("tokenfold"), "tokenfold listening on http://")?;
        let (addr, at) = listening_addr(&mut process).await?;
        listening.push(at.duration_since(process.started));
        runs.push(first_200(&mut process, addr, &probe, Duration::from_secs(10), Duration::from_micros(200)).await?);
        last = Some((process, addr));
    }
    let (process, addr) = last.ok_or("tokenfold never started")?;
    let idle = settle_and_measure(&process).await;
    let sampler = RssSampler::start(process.pgid());
    Ok(Running {
        name: "tokenfold",
        version: env!("CARGO_PKG_VERSION").to_string(),
        addr,
        key: CLIENT_KEY.to_string(),
        models: Models {
            anthropic: "claude-sonnet-4-5".into(),
            openai: "gpt-5".into(),
            failover_503: Some("failover-503".into()),
            failover_refused: Some("failover-refused".into()),
        },
        start: startup_stats(runs, listening),
        idle,
        sampler,
        setup: format!(
            "tokenfold {} release binary, `serve --config` (fold on, ledger {}, pool store in memory{})",
            env!("CARGO_PKG_VERSION"),
            if ledger.as_os_str() == "off" { "off" } else { "on" },
            std::env::var("TOKENFOLD_LOG").map(|l| format!(", TOKENFOLD_LOG={l}")).unwrap_or_default()
        ),
        process,
    })
}

async fn listening_addr(process: &mut Spawned) -> Result<(SocketAddr, std::time::Instant), String> {
    loop {
        match process.watched.try_recv() {
            Ok((line, at)) => {
                let rest = line.trim_start_matches("tokenfold listening on http://");
                let addr = rest.split_whitespace().next().unwrap_or("");
                let addr = addr.parse().map_err(|_| format!("cannot parse the listening address in `{line}`"))?;
                return Ok((addr, at));
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                return Err(format!("tokenfold exited before listening: {}", last_line(&process.log_tail())))
            }
        }
        if process.started.elapsed() > Duration::from_secs(10) {
            return Err(format!("no listening line within 10 s: {}", last_line(&process.log_tail())));
        }
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Installed peers

/// `ok VERSION` from the install script's status file, or why the peer is not there.
fn installed(dirs: &Dirs, name: &str) -> Result<(PathBuf, String), String> {
    let Some(peers) = &dirs.peers else {
        return Err("not run: needs `--peers DIR` (benches/suite.sh installs the peers and passes it)".into());
    };
    let root = peers.join(name);
    let status = std::fs::read_to_string(root.join("status"))
        .map_err(|_| format!("not installed in {} (run benches/suite.sh)", root.display()))?;
    let status = status.trim();
    match status.strip_prefix("ok ") {
        Some(version) => Ok((root, version.trim().to_string())),
        None => Err(format!("could not be installed: {}", status.trim_start_matches("failed:").trim())),
    }
}

fn litellm_config(mock: SocketAddr, refused: u16) -> String {
    format!(
        r#"# Written by benches/suite.rs: the mock as an OpenAI-compatible and as an Anthropic upstream.
model_list:
  - model_name: gpt-5
    litellm_params: {{ model: openai/gpt-5, api_base: "http://{mock}/v1", api_key: sk-suite-upstream }}
  - model_name: claude-sonnet-4-5
    litellm_params: {{ model: anthropic/claude-sonnet-4-5, api_base: "http://{mock}", api_key: sk-suite-upstream }}
  - model_name: down-503
    litellm_params: {{ model: openai/gpt-5, api_base: "http://{mock}{FAIL_PREFIX}/v1", api_key: sk-suite-upstream }}
  - model_name: down-refused
    litellm_params: {{ model: openai/gpt-5, api_base: "http://127.0.0.1:{refused}/v1", api_key: sk-suite-upstream }}
router_settings:
  # Straight to the fallback: no retry of the failed deployment, and no cooldown that would
  # skip it on the next request (so every failover sample crosses the down target).
  num_retries: 0
  disable_cooldowns: true
  fallbacks: [{{ "down-503": ["gpt-5"] }}, {{ "down-refused": ["gpt-5"] }}]
general_settings:
  master_key: {LITELLM_MASTER_KEY}
"#
    )
}

pub async fn start_litellm(mock: SocketAddr, refused: u16, dirs: &Dirs) -> Result<Running, String> {
    let (root, version) = installed(dirs, "litellm")?;
    let bin = root.join("venv/bin/litellm");
    if !bin.is_file() {
        return Err(format!("{} is missing (run benches/suite.sh)", bin.display()));
    }
    let config = dirs.run.join("litellm.yaml");
    std::fs::write(&config, litellm_config(mock, refused)).map_err(|e| format!("write {}: {e}", config.display()))?;
    let port = procs::free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut cmd = Command::new(&bin);
    cmd.arg("--config")
        .arg(&config)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .current_dir(&dirs.run)
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("NO_COLOR", "1");
    let mut process = procs::spawn(cmd, &dirs.log("litellm"), "")?;
    let probe = probe("gpt-5", LITELLM_MASTER_KEY)?;
    let started = first_200(&mut process, addr, &probe, Duration::from_secs(240), Duration::from_millis(20)).await?;
    let idle = settle_and_measure(&process).await;
    let sampler = RssSampler::start(process.pgid());
    Ok(Running {
        name: "LiteLLM",
        setup: format!(
            "LiteLLM proxy {version} (`litellm --config`, its default single uvicorn worker, master key, no database)"
        ),
        version,
        addr,
        process,
        key: LITELLM_MASTER_KEY.to_string(),
        models: Models {
            anthropic: "claude-sonnet-4-5".into(),
            openai: "gpt-5".into(),
            failover_503: Some("down-503".into()),
            failover_refused: Some("down-refused".into()),
        },
        start: startup_stats(vec![started], Vec::new()),
        idle,
        sampler,
    })
}

// ---------------------------------------------------------------------------------------------
// 9Router

struct NineRouterPaths {
    app: PathBuf,
    node_path: String,
    data: PathBuf,
}

fn ninerouter_command(p: &NineRouterPaths, port: u16) -> Command {
    // What its CLI (cli.js) runs, minus the update check, browser and tray: the bundled
    // standalone server, bound to loopback, its data in this run's folder.
    let mut cmd = Command::new("node");
    cmd.args(["--dns-result-order=ipv4first", "custom-server.js"])
        .current_dir(&p.app)
        .env("PORT", port.to_string())
        .env("HOSTNAME", "127.0.0.1")
        .env("DATA_DIR", &p.data)
        .env("NODE_PATH", &p.node_path)
        .env("INITIAL_PASSWORD", NINEROUTER_PASSWORD)
        .env("NEXT_TELEMETRY_DISABLED", "1")
        .env("NO_COLOR", "1");
    cmd
}

pub async fn start_ninerouter(mock: SocketAddr, refused: u16, dirs: &Dirs) -> Result<Running, String> {
    let (root, version) = installed(dirs, "9router")?;
    let app = root.join("prefix/node_modules/9router/app");
    if !app.join("custom-server.js").is_file() {
        return Err(format!("{} has no custom-server.js (run benches/suite.sh)", app.display()));
    }
    let data = dirs.run.join("9router-data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).map_err(|e| format!("create {}: {e}", data.display()))?;
    let node_path = format!("{}:{}", root.join("runtime/node_modules").display(), app.join("node_modules").display());
    let paths = NineRouterPaths { app, node_path, data };
    let port = procs::free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // First run: configure it through its API, as its dashboard would; the data persists.
    let mut first = procs::spawn(ninerouter_command(&paths, port), &dirs.log("9router"), "")?;
    wait_health(&mut first, addr).await?;
    let key = configure_ninerouter(addr, mock, refused).await?;
    drop(first);

    // Second run: start-up as a user sees it every day, configuration in place.
    let mut process = procs::spawn(ninerouter_command(&paths, port), &dirs.log("9router"), "")?;
    let probe = probe("mock/gpt-5", &key)?;
    let started = first_200(&mut process, addr, &probe, Duration::from_secs(120), Duration::from_millis(20)).await?;
    let idle = settle_and_measure(&process).await;
    let sampler = RssSampler::start(process.pgid());
    Ok(Running {
        name: "9Router",
        setup: format!(
            "9Router {version} (its bundled Next.js server as `9router` starts it, bound to 127.0.0.1; \
             OpenAI- and Anthropic-compatible provider nodes, an API key, fallback combos)"
        ),
        version,
        addr,
        process,
        key,
        models: Models {
            anthropic: "amock/claude-sonnet-4-5".into(),
            openai: "mock/gpt-5".into(),
            failover_503: Some("failover-503".into()),
            failover_refused: Some("failover-refused".into()),
        },
        start: startup_stats(vec![started], Vec::new()),
        idle,
        sampler,
    })
}

async fn wait_health(process: &mut Spawned, addr: SocketAddr) -> Result<(), String> {
    loop {
        if let Ok((status, _, _)) = client::once(addr, Method::GET, "/api/health", &[], None).await {
            if status.is_success() {
                return Ok(());
            }
        }
        if let Some(status) = process.exited() {
            return Err(format!("exited ({status}): {}", last_line(&process.log_tail())));
        }
        if process.started.elapsed() > Duration::from_secs(120) {
            return Err(format!("GET /api/health gave no 200 within 120 s: {}", last_line(&process.log_tail())));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Logs in, adds the provider nodes and their connections, an API key and the fallback combos;
/// returns the API key clients use.
async fn configure_ninerouter(addr: SocketAddr, mock: SocketAddr, refused: u16) -> Result<String, String> {
    let (status, headers, body) = client::once(
        addr,
        Method::POST,
        "/api/auth/login",
        &[],
        Some(json!({"password": NINEROUTER_PASSWORD}).to_string()),
    )
    .await?;
    let cookie = headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("auth_token="))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
        .ok_or_else(|| format!("login answered {status} without a session: {}", String::from_utf8_lossy(&body)))?;
    let auth = [("cookie", cookie)];
    let post = |path: &'static str, v: Value| {
        let auth = auth.clone();
        async move {
            let (status, _, body) = client::once(addr, Method::POST, path, &auth, Some(v.to_string())).await?;
            let text = String::from_utf8_lossy(&body).into_owned();
            if !status.is_success() {
                return Err(format!("POST {path} answered {status}: {text:.200}"));
            }
            serde_json::from_str::<Value>(&text).map_err(|e| format!("POST {path}: {e}: {text:.200}"))
        }
    };
    let nodes = [
        json!({"type": "openai-compatible", "apiType": "chat", "name": "mock", "prefix": "mock", "baseUrl": format!("http://{mock}/v1")}),
        json!({"type": "anthropic-compatible", "name": "amock", "prefix": "amock", "baseUrl": format!("http://{mock}/v1")}),
        json!({"type": "openai-compatible", "apiType": "chat", "name": "fail", "prefix": "fail", "baseUrl": format!("http://{mock}{FAIL_PREFIX}/v1")}),
        json!({"type": "openai-compatible", "apiType": "chat", "name": "refused", "prefix": "refused", "baseUrl": format!("http://127.0.0.1:{refused}/v1")}),
    ];
    for node in nodes {
        let created = post("/api/provider-nodes", node).await?;
        let id = created["node"]["id"].as_str().ok_or("provider node without an id")?.to_string();
        post("/api/providers", json!({"provider": id, "apiKey": "sk-suite-upstream", "name": format!("suite {id}")}))
            .await?;
    }
    let key = post("/api/keys", json!({"name": "suite"})).await?;
    let key = key["key"].as_str().ok_or("POST /api/keys gave no key")?.to_string();
    post("/api/combos", json!({"name": "failover-503", "models": ["fail/gpt-5", "mock/gpt-5"]})).await?;
    post("/api/combos", json!({"name": "failover-refused", "models": ["refused/gpt-5", "mock/gpt-5"]})).await?;
    Ok(key)
}
