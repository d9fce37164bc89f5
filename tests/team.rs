//! A team gateway: two real `tokenfold serve` processes share one real Redis (quota windows,
//! cooldowns, breakers, originals) and one real PostgreSQL (the ledger), in front of a mock
//! provider that enforces its own RPM and TPM limits as a real one does (429 past them).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::mock::{self, Reply};
use common::services::{Postgres, RedisServer};
use common::{spawn_proxy, temp_dir, temp_file, Proxy};
use serde_json::json;

const REQUESTS: usize = 1000;
const CLIENTS: usize = 8;
/// The limited target's limits, per account and rolling minute (the run lasts well under one).
const RPM: u64 = 60;
const TPM: u64 = 20_000;
const COMPLETION: u64 = 100;

/// What the mock provider saw of the limited target: accepted requests with their billed tokens
/// and when, and the requests it had to refuse because they were over a limit.
#[derive(Default)]
struct Seen {
    small: Vec<(Instant, u64)>,
    exceeded: usize,
    big: usize,
}

/// What the provider bills for a request body.
fn billed(body: &[u8]) -> u64 {
    body.len() as u64 / 8 + COMPLETION
}

fn answer(body: &[u8]) -> Reply {
    let prompt = body.len() as u64 / 8;
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": COMPLETION, "total_tokens": prompt + COMPLETION});
    Reply::ok_json(
        json!({"id": "chatcmpl-team", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
            "usage": usage})
        .to_string(),
    )
}

/// A provider whose `small` account allows `RPM` requests and `TPM` tokens per rolling minute
/// (and says so with a 429 past them, as real providers do); `big` takes anything.
async fn limited_provider(seen: Arc<Mutex<Seen>>) -> mock::Mock {
    mock::start(move |req| {
        let mut s = seen.lock().unwrap();
        if !req.path.starts_with("/small/") {
            s.big += 1;
            return answer(&req.body);
        }
        let now = Instant::now();
        s.small.retain(|(at, _)| now.duration_since(*at) < Duration::from_secs(60));
        let (requests, tokens) = (s.small.len() as u64, s.small.iter().map(|(_, t)| t).sum::<u64>());
        let cost = billed(&req.body);
        if requests + 1 > RPM || tokens + cost > TPM {
            s.exceeded += 1;
            let body =
                json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}});
            return Reply::Json {
                status: 429,
                body: body.to_string().into_bytes(),
                headers: vec![("retry-after", "30".into())],
            };
        }
        s.small.push((now, cost));
        answer(&req.body)
    })
    .await
}

fn team_config(mock: &str, redis: &str, name: &str, ledger: Option<&str>) -> String {
    let ledger = ledger.map(|u| format!("[ledger]\nurl = \"{u}\"\n")).unwrap_or_default();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[timeouts]
connect_ms = 2000
first_byte_ms = 5000
idle_ms = 5000

[[providers]]
name = "small"
kind = "openai"
base_url = "{mock}/small/v1"
api_key = "${{SMALL_KEY}}"
limits = {{ rpm = {RPM}, tpm = {TPM} }}
models = ["m"]

[[providers]]
name = "big"
kind = "openai"
base_url = "{mock}/big/v1"
api_key = "${{BIG_KEY}}"
models = ["m"]

[routes.team]
targets = ["small/m", "big/m"]

[pool]
store = "memory"

[state]
redis_url = "{redis}"
name = "{name}"

{ledger}
"#
    )
}

/// One instance of the team: its own data and cache directories, as on its own machine.
fn instance(cfg: &std::path::Path, tag: &str) -> Proxy {
    let home = temp_dir(tag);
    let (data, cache) = (home.join("data"), home.join("cache"));
    spawn_proxy(
        &["--config", cfg.to_str().unwrap()],
        &[
            ("SMALL_KEY", "sk-small"),
            ("BIG_KEY", "sk-big"),
            ("XDG_DATA_HOME", data.to_str().unwrap()),
            ("XDG_CACHE_HOME", cache.to_str().unwrap()),
        ],
    )
}

fn request_body(i: usize) -> String {
    let pad = format!("request {i}: ").repeat(150);
    json!({"model": "team", "max_tokens": 200, "messages": [{"role": "user", "content": pad}]}).to_string()
}

/// Sends `REQUESTS` requests, alternating between the instances, `CLIENTS` at a time; calls
/// `halfway` once half of them are sent. Returns the statuses that were not 200, with bodies.
async fn run_load(a: &Proxy, b: &Proxy, halfway: impl FnOnce() + Send + 'static) -> Vec<String> {
    let urls = Arc::new([a.url("/v1/chat/completions"), b.url("/v1/chat/completions")]);
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let halfway = Arc::new(Mutex::new(Some(halfway)));
    let mut workers = Vec::new();
    for _ in 0..CLIENTS {
        let (urls, next, errors, halfway) = (urls.clone(), next.clone(), errors.clone(), halfway.clone());
        workers.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= REQUESTS {
                    return;
                }
                if i == REQUESTS / 2 {
                    if let Some(f) = halfway.lock().unwrap().take() {
                        f();
                    }
                }
                let r = c.post(&urls[i % 2]).body(request_body(i)).send().await.unwrap();
                let status = r.status();
                let text = r.text().await.unwrap();
                if status != 200 {
                    errors.lock().unwrap().push(format!("request {i}: {status} {text}"));
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    Arc::try_unwrap(errors).unwrap().into_inner().unwrap()
}

/// The limited account's counts in Redis: today's requests and tokens.
async fn redis_day_counts(redis_url: &str, pool: &str, mock: &str) -> (u64, u64) {
    let client = redis::Client::open(redis_url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("tokenfold:{pool}:s:small|{mock}/small/v1|default");
    let (dr, dt): (Option<u64>, Option<u64>) =
        redis::cmd("HMGET").arg(&key).arg("dr").arg("dt").query_async(&mut c).await.unwrap();
    (dr.unwrap_or(0), dt.unwrap_or(0))
}

/// Waits until the Redis counts of the limited account equal the provider's own (settling is
/// queued off the request path), then asserts they do.
async fn assert_counters_match(redis_url: &str, pool: &str, mock: &str, seen: &Mutex<Seen>) {
    let (requests, tokens) = {
        let s = seen.lock().unwrap();
        (s.small.len() as u64, s.small.iter().map(|(_, t)| t).sum::<u64>())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = redis_day_counts(redis_url, pool, mock).await;
    while got != (requests, tokens) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = redis_day_counts(redis_url, pool, mock).await;
    }
    assert_eq!(got, (requests, tokens), "Redis (requests, tokens) of the limited account against the provider's count");
}

fn report_total(url: &str) -> u64 {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
        .args(["report", "--since", "1h", "--json", "--ledger", url])
        .output()
        .unwrap();
    assert!(out.status.success(), "report failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["total"]["requests"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_one_pool_and_one_ledger() {
    let test = "two_instances_share_one_pool_and_one_ledger";
    let Some(redis) = RedisServer::start(test) else { return };
    let pg = Postgres::start(test);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mock = limited_provider(seen.clone()).await;
    let cfg = team_config(&mock.base(), &redis.url(), "load", pg.as_ref().map(|p| p.url()).as_deref());
    let cfg = temp_file("team.toml", &cfg);
    let (a, b) = (instance(&cfg, "a"), instance(&cfg, "b"));

    let errors = run_load(&a, &b, || {}).await;
    assert!(errors.is_empty(), "{} client errors, first: {:?}", errors.len(), errors.first());
    let (exceeded, small, big) = {
        let s = seen.lock().unwrap();
        (s.exceeded, s.small.len() as u64, s.big)
    };
    assert_eq!(exceeded, 0, "the provider saw its limits exceeded {exceeded} times");
    // The limited account was used up to its limits, not starved: TPM binds first here.
    assert!(
        small >= TPM / billed(request_body(0).as_bytes()) / 2 && small <= RPM,
        "{small} requests on the limited account"
    );
    assert_eq!(small as usize + big, REQUESTS, "every request reached the provider once");
    assert_counters_match(&redis.url(), "load", &mock.base(), &seen).await;
    let metrics = a.metrics().await;
    assert!(metrics.contains("tokenfold_shared_state_up 1\n"), "{metrics}");
    assert!(metrics.contains("tokenfold_shared_state_instances 2\n"), "{metrics}");

    // One ledger for the team: the report reads every instance's records from PostgreSQL.
    let Some(pg) = pg else { return };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut total = report_total(&pg.url());
    while total < REQUESTS as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        total = report_total(&pg.url());
    }
    assert_eq!(total, REQUESTS as u64, "report --ledger postgres://… counts every request of both instances");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_halfway_and_restarted() {
    let test = "redis_killed_halfway_and_restarted";
    let Some(redis) = RedisServer::start(test) else { return };
    let redis = Arc::new(Mutex::new(redis));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mock = limited_provider(seen.clone()).await;
    let url = redis.lock().unwrap().url();
    let cfg = temp_file("team-kill.toml", &team_config(&mock.base(), &url, "kill", None));
    let (a, b) = (instance(&cfg, "ka"), instance(&cfg, "kb"));

    // Halfway Redis dies (losing every key); 300 ms later it is back, empty.
    let r = redis.clone();
    let restarted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = restarted.clone();
    let errors = run_load(&a, &b, move || {
        r.lock().unwrap().kill();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            r.lock().unwrap().restart();
            done.store(true, Ordering::Relaxed);
        });
    })
    .await;
    assert!(errors.is_empty(), "{} client errors, first: {:?}", errors.len(), errors.first());
    assert_eq!(seen.lock().unwrap().exceeded, 0, "the provider saw its limits exceeded");
    while !restarted.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The outage was seen and said once; both instances are back on the shared state.
    for p in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !p.metrics().await.contains("tokenfold_shared_state_up 1\n") {
            assert!(Instant::now() < deadline, "never back on Redis:\n{}", p.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let logs = a.logs() + &b.logs();
    let warned = logs.matches("is unreachable").count();
    assert!((1..=2).contains(&warned), "one warning per instance that saw the outage:\n{logs}");
    assert!(logs.contains("came back without its data"), "the counts were given back:\n{logs}");
    // After recovery the shared counters converge to what the provider counted.
    assert_counters_match(&url, "kill", &mock.base(), &seen).await;
}

/// `fold.public_url` points agents at the load balancer: a marker's `/o/<id>` may reach either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_written_by_one_instance_is_served_by_the_other() {
    let test = "a_marker_written_by_one_instance_is_served_by_the_other";
    let Some(redis) = RedisServer::start(test) else { return };
    let mock = mock::start(|_| Reply::ok_json(mock::anthropic_message("ok"))).await;
    let cfg = format!(
        "{}\n[fold]\npublic_url = \"http://gateway.team.example\"\n[state]\nredis_url = \"{}\"\nname = \"markers\"\n",
        common::config_for(&mock.base(), "", "auth = \"client\""),
        redis.url()
    );
    let cfg = temp_file("team-markers.toml", &cfg);
    let (a, b) = (instance(&cfg, "ma"), instance(&cfg, "mb"));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/filters");
    let (cmd, out) = (
        std::fs::read_to_string(dir.join("npm_install.cmd")).unwrap(),
        std::fs::read_to_string(dir.join("npm_install.out")).unwrap(),
    );
    let body = json!({"model": "claude-test", "max_tokens": 100, "messages": [
        {"role": "user", "content": "install the deps"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": cmd}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": out}]}]});
    let c = reqwest::Client::new();
    let r = c.post(a.url("/v1/messages")).body(body.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let sent = mock.last().json()["messages"][2]["content"][0]["content"].as_str().unwrap().to_string();
    let k = sent.find("http://gateway.team.example/o/").expect("a marker with the gateway's URL");
    let id: String = sent[k + "http://gateway.team.example/o/".len()..].chars().take(12).collect();
    // Instance B never saw the output: it answers from Redis.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = c.get(b.url(&format!("/o/{id}"))).send().await.unwrap();
        if got.status() == 200 {
            assert_eq!(got.bytes().await.unwrap(), out.as_bytes(), "byte for byte");
            break;
        }
        assert!(Instant::now() < deadline, "B never served {id}: {}\nA:\n{}\nB:\n{}", got.status(), a.logs(), b.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.get(b.url("/o/000000000000")).send().await.unwrap().status(), 404);
}

/// Failures seen by one instance open the breaker for all: the other does not try the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_by_one_instance_holds_for_the_other() {
    let test = "a_breaker_opened_by_one_instance_holds_for_the_other";
    let Some(redis) = RedisServer::start(test) else { return };
    let small_hits = Arc::new(AtomicUsize::new(0));
    let hits = small_hits.clone();
    let mock = mock::start(move |req| {
        if req.path.starts_with("/small/") {
            hits.fetch_add(1, Ordering::Relaxed);
            let body = json!({"error": {"message": "overloaded", "type": "server_error"}});
            return Reply::Json { status: 503, body: body.to_string().into_bytes(), headers: vec![] };
        }
        answer(&req.body)
    })
    .await;
    // A failure demotes a target for `short_cooldown_ms`: 1 ms here, so it is tried again at once.
    let cfg =
        team_config(&mock.base(), &redis.url(), "breaker", None).replace("[pool]\n", "[pool]\nshort_cooldown_ms = 1\n");
    let cfg = temp_file("team-breaker.toml", &cfg);
    let (a, b) = (instance(&cfg, "ba"), instance(&cfg, "bb"));
    let c = reqwest::Client::new();
    // Three failures in a row (the default `breaker_failures`) through A open the breaker...
    for i in 0..3 {
        let r = c.post(a.url("/v1/chat/completions")).body(request_body(i)).send().await.unwrap();
        assert_eq!(r.status(), 200, "the second target answers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(small_hits.load(Ordering::Relaxed), 3);
    // ...and B, which never saw a failure, keeps off the target (once the settling is written).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 3..10 {
        let r = c.post(b.url("/v1/chat/completions")).body(request_body(i)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(small_hits.load(Ordering::Relaxed), 3, "B tried a target whose breaker A opened");
}

/// `deploy/tokenfold.toml` is what every instance of the compose file reads: it must load with
/// the environment the compose file gives, and name the services the compose file defines.
#[test]
fn the_deploy_config_loads_and_matches_the_compose_file() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let text = std::fs::read_to_string(root.join("tokenfold.toml")).unwrap();
    let env = |v: &str| match v {
        "TOKENFOLD_API_KEY" => Some("team-key".to_string()),
        "TOKENFOLD_LEDGER_URL" => Some("postgres://tokenfold:pw@postgres:5432/tokenfold".to_string()),
        "ANTHROPIC_API_KEY" => Some("sk-ant".to_string()),
        _ => None,
    };
    let cfg = tokenfold::config::Config::parse(&text, "deploy/tokenfold.toml", &env).unwrap();
    let state = cfg.state.as_ref().expect("[state] is set");
    assert_eq!((state.redis.url.expose(), state.name.as_str()), ("redis://redis:6379/0", "team"));
    assert!(cfg.ledger_url.as_ref().unwrap().url.expose().contains("@postgres:5432/"));
    assert!(!cfg.api_keys.is_empty() && !cfg.listen.ip().is_loopback(), "reachable by nginx, with a key");
    let compose = std::fs::read_to_string(root.join("compose.yaml")).unwrap();
    for needle in ["tokenfold-a:", "tokenfold-b:", "nginx:", "redis:", "postgres:", "TOKENFOLD_LEDGER_URL", "/healthz"]
    {
        assert!(compose.contains(needle), "compose.yaml lacks {needle}");
    }
    let nginx = std::fs::read_to_string(root.join("nginx.conf")).unwrap();
    assert!(nginx.contains("server tokenfold-a:8411") && nginx.contains("server tokenfold-b:8411"));
    assert!(nginx.contains("proxy_buffering off"), "streams are relayed event by event");
}
