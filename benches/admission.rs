//! Admission through the shared Redis against the embedded default (SQLite store), in one run.
//!
//! ```text
//! cargo bench --bench admission              # full run (20,000 admissions each)
//! cargo bench --bench admission -- --quick   # smoke run
//! ```
//!
//! Two pools over the same config, one with `[state] redis_url` (a `redis-server` this bench
//! starts on a free loopback port) and one saving to a SQLite store, admit requests in turn:
//! `plan` + `admit_next` + `report` (what a request's admission costs the proxy; the settling
//! writes of both go off the request path). Reported: p50 and p99 of each and the p50 Redis adds;
//! target ≤ 250 µs. Needs `redis-server` (`.ci/run` installs it); without it the bench says
//! SKIPPED, or fails under `CI=true`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokenfold::config::Config;
use tokenfold::dialect::usage::Usage;
use tokenfold::dialect::Dialect;
use tokenfold::pool::{Clock, Outcome, Pool, RequestFacts};

struct RedisProcess(Child);

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(state: &str, store: &str) -> Config {
    let text = format!(
        r#"
[[providers]]
name = "small"
kind = "openai"
base_url = "http://127.0.0.1:9/small/v1"
api_key = "${{KEY}}"
limits = {{ rpm = 1000000000, tpm = 1000000000000, rpd = 1000000000, concurrent = 1000 }}
models = [{{ name = "m", limits = {{ tpm = 1000000000000 }} }}]

[[providers]]
name = "big"
kind = "openai"
base_url = "http://127.0.0.1:9/big/v1"
api_key = "${{KEY}}"
models = ["m"]

[routes.team]
targets = ["small/m", "big/m"]

[pool]
store = "{store}"

{state}
"#
    );
    Config::parse(&text, "bench", &|_| Some("sk-bench".into())).expect("bench config")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn admit_once(pool: &Pool, facts: &RequestFacts) -> Duration {
    let t = Instant::now();
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("team"), facts).expect("a plan");
    let attempt = plan.admit_next().await.expect("admitted");
    let usage = Usage { input: 900, output: 100, ..Usage::default() };
    attempt.report(Outcome::Success(Some(usage)));
    t.elapsed()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 1_000 } else { 20_000 };
    let Some(bin) = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("redis-server")).find(|p| p.is_file()))
    else {
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "redis-server is missing (CI=true; see .ci/run)");
        println!("SKIPPED admission bench: redis-server is not installed (Debian package redis-server)");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("tokenfold-bench-admission-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let redis = Command::new(bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let _redis = RedisProcess(redis);
    let store: PathBuf = dir.join("pool.db");
    let shared_cfg = config(&format!("[state]\nredis_url = \"redis://127.0.0.1:{port}\"\nname = \"bench\""), "memory");
    let local_cfg = config("", &store.display().to_string());

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let shared = Pool::with_clock(&shared_cfg, Clock::system());
        let local = Pool::with_clock(&local_cfg, Clock::system());
        let redis = shared.shared().expect("a shared pool").clone();
        assert!(redis.ready(Duration::from_secs(10)).await, "redis-server did not answer");
        let facts = RequestFacts { est_tokens: 1000, max_output: Some(200), ..RequestFacts::default() };
        for _ in 0..n / 10 {
            admit_once(&shared, &facts).await;
            admit_once(&local, &facts).await;
        }
        let (mut with_redis, mut sqlite) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            // In turn, so both see the same machine load.
            if i % 2 == 0 {
                with_redis.push(admit_once(&shared, &facts).await);
                sqlite.push(admit_once(&local, &facts).await);
            } else {
                sqlite.push(admit_once(&local, &facts).await);
                with_redis.push(admit_once(&shared, &facts).await);
            }
        }
        assert!(redis.is_up(), "Redis went away during the run");
        with_redis.sort_unstable();
        sqlite.sort_unstable();
        let (r50, r99) = (percentile(&with_redis, 0.5), percentile(&with_redis, 0.99));
        let (s50, s99) = (percentile(&sqlite, 0.5), percentile(&sqlite, 0.99));
        let added = r50.saturating_sub(s50);
        println!("admission ({n} each, in turn; plan + admit_next + report):");
        println!("  sqlite store only   p50 {:>7.1} µs   p99 {:>7.1} µs", us(s50), us(s99));
        println!("  shared via redis    p50 {:>7.1} µs   p99 {:>7.1} µs", us(r50), us(r99));
        println!("  added by redis      p50 {:>7.1} µs   (target ≤ 250 µs): {}", us(added), verdict(added));
        local.flush();
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn verdict(added: Duration) -> &'static str {
    if added <= Duration::from_micros(250) {
        "PASS"
    } else {
        "FAIL"
    }
}
